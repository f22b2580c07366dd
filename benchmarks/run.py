"""Every benchmark, one after the other, with JSON results in benchmarks/out/ (`make bench`).

Each benchmark measures simreel side by side with its baseline in the same run, so the ratios hold
on a shared, noisy machine; copy the figures into RESULTS.md with the date and machine.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"

STEPS = [
    ("sim_loop_fast", [sys.executable, "-m", "benchmarks.bench_sim_loop", "--quality", "fast", "--json"]),
    ("sim_loop_full", [sys.executable, "-m", "benchmarks.bench_sim_loop", "--quality", "full", "--duration", "6",
                       "--repeat", "1", "--json"]),
    ("encoder", [sys.executable, "benchmarks/bench_encoder.py", "--repeat", "3", "--gif", "160", "--json"]),
    ("pipeline", [sys.executable, "-m", "simreel.cli", "bench", "pipeline", "--json"]),
    ("render_compare", [sys.executable, "-m", "simreel.cli", "bench", "compare", "--backend", "egl", "--backend",
                        "osmesa", "--quality", "full", "--quality", "fast", "--res", "640x480", "--res", "1280x960",
                        "--json"]),
    ("gym_short", [sys.executable, "benchmarks/bench_gym.py", "cheetah", "--episodes", "2", "--steps", "120",
                   "--repeat", "2", "--json"]),
    ("gym_long", [sys.executable, "benchmarks/bench_gym.py", "cheetah", "--episodes", "2", "--steps", "1000",
                  "--json"]),
    ("gym_cartpole", [sys.executable, "benchmarks/bench_gym.py", "cartpole", "--repeat", "3", "--json"]),
    ("gym_vector", [sys.executable, "benchmarks/bench_vector.py", "--repeat", "1", "--json"]),
    ("frames", [sys.executable, "-m", "benchmarks.bench_frames", "--json"]),
    ("blank_guard", [sys.executable, "-m", "benchmarks.bench_blank_guard", "--json"]),
    ("sizing", [sys.executable, "-m", "benchmarks.bench_sizing", "--json"]),
    ("bus", [sys.executable, "-m", "benchmarks.bench_bus", "--json"]),
    # Needs root and iproute2; exits 3 (reported as skipped) where network namespaces are not allowed.
    ("netns", [sys.executable, "-m", "benchmarks.bench_netns", "--json"]),
    ("engines", [sys.executable, "-m", "benchmarks.bench_engines", "--json"]),
    ("batched", [sys.executable, "-m", "benchmarks.bench_batched", "--json"]),
    ("scene_files", [sys.executable, "-m", "benchmarks.bench_scene_files", "--rounds", "4", "--json"]),
    ("streams", [sys.executable, "-m", "benchmarks.bench_streams", "--json"]),
    # Needs Debian's chromium (/usr/bin/chromium) and playwright (test extras).
    ("ui", [sys.executable, "-m", "benchmarks.bench_ui", "--json"]),
]
SKIPPED = 3


def main(argv: list[str]) -> int:
    only = set(argv)
    OUT.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "egl")
    failed = []
    for name, cmd in STEPS:
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        rc = subprocess.call([*cmd, str(OUT / f"{name}.json")], env=env, cwd=Path(__file__).resolve().parents[1])
        if rc == SKIPPED and name == "netns":
            print(f"{name}: skipped (see its message above)", file=sys.stderr)
        elif rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
