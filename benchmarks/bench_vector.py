"""Gymnasium's vector RecordVideo vs simreel.gym.vector.RecordVideo vs rendering without recording.

An 8-env SyncVectorEnv of HalfCheetah-v5 (--width×--height per sub-env), --steps steps, every sub-env
tiled into one grid video of sub-env 0's first episode. Each variant runs in a fresh interpreter with
the same seeds and actions:

- `none`: envs.step() + envs.render() every step, frames dropped (the cost of rendering alone);
- `gymnasium`: gymnasium.wrappers.vector.RecordVideo (grid frames kept in a list, moviepy at close);
- `simreel`: simreel.gym.vector.RecordVideo, nothing configured (the embedded stack, started by the
  wrapper in the background), grid frames streamed.

Reported: the loop, `close()`, the total and its ratio to `none`, and the env process's peak RSS
growth (Gymnasium's grows with frames × envs; simreel's should stay flat).

    python benchmarks/bench_vector.py --envs 8 --steps 500 --width 320 --height 240 [--repeat 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

VARIANTS = ("none", "gymnasium", "simreel")

_CHILD = textwrap.dedent("""
    import json, os, sys, time
    import gymnasium as gym
    import numpy as np

    mode, n, steps, width, height, folder = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                                             int(sys.argv[5]), sys.argv[6])

    def hwm_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    envs = gym.make_vec("HalfCheetah-v5", num_envs=n, vectorization_mode="sync", render_mode="rgb_array",
                        width=width, height=height)
    if mode == "gymnasium":
        envs = gym.wrappers.vector.RecordVideo(envs, folder, episode_trigger=lambda e: e == 0)
    elif mode == "simreel":
        from simreel.gym.vector import RecordVideo
        envs = RecordVideo(envs, folder, episode_trigger=lambda e: e == 0)
    rng = np.random.default_rng(0)
    hwm0 = hwm_mb()
    t0 = time.monotonic()
    envs.reset(seed=0)
    if mode == "none":
        envs.render()
    for _ in range(steps):
        envs.step(rng.uniform(-1, 1, (n, 6)).astype(np.float32))
        if mode == "none":
            envs.render()
    t_end = time.monotonic()
    envs.close()
    t_closed = time.monotonic()
    videos = sorted(p for p in os.listdir(folder) if p.endswith(".mp4")) if mode != "none" else []
    print(json.dumps({"mode": mode, "loop_s": t_end - t0, "close_s": t_closed - t_end, "total_s": t_closed - t0,
                      "hwm_growth_mb": hwm_mb() - hwm0, "videos": videos}))
""")


def run_variant(mode: str, a: argparse.Namespace, folder: Path) -> dict:
    env = {**os.environ, "SIMREEL_LOG_LEVEL": "warning"}
    env.pop("SIMREEL_NATS_URL", None)
    p = subprocess.run([sys.executable, "-c", _CHILD, mode, str(a.envs), str(a.steps), str(a.width), str(a.height),
                        str(folder)], env=env, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{p.stderr[-4000:]}")
    return json.loads([line for line in p.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds; the fastest total of each is reported")
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args()

    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    runs: dict[str, list[dict]] = {m: [] for m in variants}
    with tempfile.TemporaryDirectory(prefix="bench-vector-") as tmp:
        for round_ in range(a.repeat):
            for mode in variants:
                r = run_variant(mode, a, Path(tmp) / f"{mode}-{round_}")
                runs[mode].append(r)
                print(f"{mode}: {json.dumps(r)}", file=sys.stderr, flush=True)
    results = [min(runs[m], key=lambda r: r["total_s"]) for m in variants]
    base = next((r["total_s"] for r in results if r["mode"] == "none"), None)
    print(f"\n{a.envs}-env SyncVectorEnv HalfCheetah-v5 {a.width}x{a.height} per env, tiled, {a.steps} steps; "
          f"{platform.machine()} {os.cpu_count()} cores, MUJOCO_GL={os.environ.get('MUJOCO_GL')}; "
          f"best of {a.repeat} interleaved round(s)\n")
    print("| variant | loop s | close() s | total s | × rendering alone | env peak RSS growth MB | videos |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        ratio = f"{r['total_s'] / base:.3f}" if base else "-"
        print(f"| {r['mode']} | {r['loop_s']:.2f} | {r['close_s']:.2f} | {r['total_s']:.2f} | {ratio} "
              f"| {r['hwm_growth_mb']:.1f} | {len(r['videos'])} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "best": results, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
