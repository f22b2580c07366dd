"""gymnasium's RecordVideo vs simreel.gym.RecordVideo vs rendering without recording, as a user runs them.

Each variant runs in a fresh interpreter (so VmHWM, the peak RSS, belongs to that variant alone) with
the same seeds, actions and steps:

- `none`: env.step() + env.render() every step, frames dropped (the cost of rendering alone);
- `gymnasium`: gymnasium.wrappers.RecordVideo (frames kept in a list, moviepy encodes at reset/close);
- `simreel`: simreel.gym.RecordVideo with nothing configured: the process's embedded stack (nats-server
  + encoder/uploader co-hosted in one child) is started by the wrapper, in the background, exactly as
  a new user gets it. Nothing is warmed up for it: its start-up is part of what is measured.

Scenarios:

- `cheetah`: HalfCheetah-v5 at --width×--height, --episodes episodes of --steps steps, every episode
  recorded. Reported: the loop (first reset to last step), `close()`, the total, its ratio to `none`,
  the env process's peak RSS growth, the slowest step, and CPU seconds of the env process (with
  moviepy's ffmpeg child) and of the stack's children.
- `cartpole`: CleanRL's usage: CartPole-v1, 600 random steps, every other episode recorded (env 0 of
  CleanRL's vector env is such a wrapped env). Reported: the same, plus the first recorded step.

With `--all-episodes` every episode is recorded by every variant (a candidate, for simreel-keep), and the
variant `simreel-keep` records every episode with `keep=keep.failures()`: the videos of episodes that
did not fail are discarded after they end. Reported besides: bytes stored (everything the variant left
on disk: videos, and for simreel its store with telemetry and reports), videos kept / discarded, and
seconds from each kept episode's end to its stored video (simreel: `store_latency_s`; gymnasium: its
`stop_recording()`, which writes the file at the next reset).

    python benchmarks/bench_gym.py cartpole --all-episodes --variants none,gymnasium,simreel-keep
    python benchmarks/bench_gym.py cheetah --all-episodes --variants none,gymnasium,simreel-keep

Where GL is first used (the first reset's render) is the same in every variant and inside the loop.

    python benchmarks/bench_gym.py cheetah --episodes 2 --steps 120 --repeat 2
    python benchmarks/bench_gym.py cheetah --episodes 2 --steps 1000
    python benchmarks/bench_gym.py cartpole --steps 600 --repeat 3
    python benchmarks/bench_gym.py cartpole --before-python ../other-checkout/.venv/bin/python
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import tempfile
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

VARIANTS = ("none", "gymnasium", "simreel")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")

_CHILD = textwrap.dedent("""
    import json, os, resource, sys, time
    import gymnasium as gym

    scenario, mode, episodes, steps, width, height, folder = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
        int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
    all_episodes = os.environ.get("BENCH_ALL_EPISODES") == "1"

    def stored_bytes(folder):  # every file once (videos are linked into the folder from the store)
        seen, total = set(), 0
        for root, _, files in os.walk(folder):
            for f in files:
                st = os.stat(os.path.join(root, f))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
        return total

    def hwm_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    def cpu_s():  # this process and its waited-for children (moviepy encodes in an ffmpeg child)
        r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime

    def children_cpu_s():  # live children (simreel's stack) by /proc
        total, me = 0, os.getpid()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(f[1]) == me:
                total += int(f[11]) + int(f[12])
        return total / os.sysconf("SC_CLK_TCK")

    if scenario == "cheetah":
        env = gym.make("HalfCheetah-v5", render_mode="rgb_array", width=width, height=height, max_episode_steps=steps)
        trigger = lambda e: True
    else:
        env = gym.make("CartPole-v1", render_mode="rgb_array")
        trigger = lambda e: e % 2 == 0
    if all_episodes:
        trigger = lambda e: True
    hwm0 = hwm_mb()
    latencies = []
    if mode == "gymnasium":
        class Timed(gym.wrappers.RecordVideo):
            def stop_recording(self):  # the file is written here, at the reset after the episode's end
                t = time.monotonic()
                super().stop_recording()
                latencies.append(time.monotonic() - t)
        env = Timed(env, folder, episode_trigger=trigger, disable_logger=True)
    elif mode == "simreel-keep":
        from simreel.contract import keep
        from simreel.gym import RecordVideo
        env = RecordVideo(env, folder, episode_trigger=trigger, keep=keep.failures())
    elif mode == "simreel":
        from simreel.contract.events import OutputSpec
        from simreel.gym import RecordVideo
        preset = os.environ.get("BENCH_X264_PRESET")
        env = RecordVideo(env, folder, episode_trigger=trigger, **({"outputs": OutputSpec(preset=preset)} if preset else {}))
    render = mode == "none"
    env.action_space.seed(0)

    cpu0 = cpu_s()
    t0 = time.monotonic()
    env.reset(seed=0)
    if render:
        env.render()
    first_step = slowest = 0.0
    n, ep = 0, 0
    while (scenario == "cheetah" and ep < episodes) or (scenario == "cartpole" and n < steps):
        ts = time.monotonic()
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        if render:
            env.render()
        dt = time.monotonic() - ts
        first_step = first_step or dt
        slowest = max(slowest, dt)
        n += 1
        if terminated or truncated:
            ep += 1
            if scenario == "cartpole" or ep < episodes:
                env.reset()
                if render:
                    env.render()
    t_end = time.monotonic()
    env.close()
    t_closed = time.monotonic()
    videos = sorted(p for p in os.listdir(folder) if p.endswith(".mp4")) if mode != "none" else []
    out = {"scenario": scenario, "mode": mode, "steps": n, "episodes": ep, "loop_s": t_end - t0,
           "close_s": t_closed - t_end, "total_s": t_closed - t0, "first_step_ms": first_step * 1000,
           "slowest_step_ms": slowest * 1000, "hwm_growth_mb": hwm_mb() - hwm0, "env_cpu_s": cpu_s() - cpu0,
           "videos": len(videos), "video_mb": sum(os.path.getsize(os.path.join(folder, v)) for v in videos) / 1e6,
           "stack_cpu_s": children_cpu_s() if mode == "simreel" else 0.0}
    if mode.startswith("simreel"):
        assert all(v["status"] == "completed" for v in env.videos), env.videos
        out["stack_cpu_s"] = children_cpu_s()
        latencies = [v.store_latency_s for v in env.videos if v.store_latency_s is not None]
    out["discarded"] = len(getattr(env, "discarded", []))
    out["stored_mb"] = stored_bytes(folder) / 1e6 if mode != "none" else 0.0
    out["latency_s"] = sorted(latencies)
    print(json.dumps(out))
""")


def run_variant(scenario: str, mode: str, a: argparse.Namespace, folder: Path) -> dict:
    env = {**os.environ, "SIMREEL_LOG_LEVEL": "warning"}
    env.pop("SIMREEL_NATS_URL", None)
    # `simreel-before`: simreel's wrapper from another install (--before-python), measured in the same
    # run as this one, so a change is compared with what it replaces under the same load.
    python = a.before_python if mode == "simreel-before" else sys.executable
    # `simreel-nice0` / `simreel-nice10`: the embedded encoder at that CPU priority (SIMREEL_ENCODER_NICE).
    if mode.startswith("simreel-nice"):
        env["SIMREEL_ENCODER_NICE"] = mode.removeprefix("simreel-nice")
    # `simreel-<x264 preset>`, e.g. simreel-superfast: the recorder with OutputSpec(preset=...).
    if mode.removeprefix("simreel-") in X264_PRESETS:
        env["BENCH_X264_PRESET"] = mode.removeprefix("simreel-")
    if a.all_episodes:
        env["BENCH_ALL_EPISODES"] = "1"
    child_mode = mode if mode == "simreel-keep" else mode.split("-")[0]
    cmd = [python, "-c", _CHILD, scenario, child_mode, str(a.episodes), str(a.steps), str(a.width),
           str(a.height), str(folder)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{p.stderr[-4000:]}")
    return {**json.loads([line for line in p.stdout.splitlines() if line.startswith("{")][-1]), "mode": mode}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", nargs="?", choices=("cheetah", "cartpole"), default="cheetah")
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--steps", type=int, default=120, help="steps per episode (cheetah) or in all (cartpole)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"of {', '.join(VARIANTS)}, simreel-keep (keep=failures), simreel-nice0, simreel-nice10 (the embedded encoder's priority), "
                         "simreel-<x264 preset> (e.g. simreel-superfast)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of all variants, interleaved; the fastest total of each is reported "
                         "(a shared machine's load only ever makes a run slower)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--all-episodes", action="store_true",
                    help="every episode recorded (a candidate for simreel-keep: keep=failures)")
    ap.add_argument("--before-python", default=None,
                    help="the Python of another simreel install: adds the variant simreel-before, run with it")
    a = ap.parse_args()
    if a.scenario == "cartpole" and a.steps == 120:
        a.steps = 600

    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    if a.before_python:
        variants.append("simreel-before")
    runs: dict[str, list[dict]] = {m: [] for m in variants}
    with tempfile.TemporaryDirectory(prefix="bench-gym-") as tmp:
        for round_ in range(a.repeat):
            for mode in variants:
                r = run_variant(a.scenario, mode, a, Path(tmp) / f"{mode}-{round_}")
                runs[mode].append(r)
                print(f"{mode}: {json.dumps(r)}", file=sys.stderr, flush=True)
    results = [min(runs[m], key=lambda r: r["total_s"]) for m in variants]
    # The machine's speed drifts between rounds by more than the margins measured here; a ratio taken
    # within one round (same minutes, same load) and its median over rounds is the steadier figure.
    per_round = {m: [r["total_s"] / b["total_s"] for r, b in zip(runs[m], runs["none"])] if "none" in runs else []
                 for m in variants}

    base = next((r["total_s"] for r in results if r["mode"] == "none"), None)
    what = (f"HalfCheetah-v5 {a.width}x{a.height}, {a.episodes} episodes x {a.steps} steps" if a.scenario == "cheetah"
            else f"CartPole-v1 (CleanRL usage), {a.steps} steps, every other episode recorded")
    print(f"\n{what}; {platform.machine()} {os.cpu_count()} cores, MUJOCO_GL={os.environ.get('MUJOCO_GL')}; "
          f"best of {a.repeat} interleaved round(s)\n")
    print("| variant | loop s | close() s | total s | × rendering alone | × per round: median (range) "
          "| first step ms | slowest step ms | env peak RSS growth MB | env CPU s | stack CPU s | videos | MP4 MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ratio = f"{r['total_s'] / base:.3f}" if base else "-"
        rr = sorted(per_round[r["mode"]])
        rounds = f"{statistics.median(rr):.3f} ({rr[0]:.3f}–{rr[-1]:.3f})" if rr else "-"
        print(f"| {r['mode']} | {r['loop_s']:.2f} | {r['close_s']:.2f} | {r['total_s']:.2f} | {ratio} | {rounds} "
              f"| {r['first_step_ms']:.1f} | {r['slowest_step_ms']:.1f} | {r['hwm_growth_mb']:.1f} "
              f"| {r['env_cpu_s']:.1f} | {r['stack_cpu_s']:.1f} | {r['videos']} | {r['video_mb']:.2f} |")
    if a.all_episodes:
        print("\n| variant | × rendering alone (median per round) | env peak RSS growth MB | stored MB | videos kept "
              "| discarded | encoder CPU s | episode end → stored video s: median (max) |")
        print("|---|---|---|---|---|---|---|---|")
        for r in results:
            rr = sorted(per_round[r["mode"]])
            lat = r["latency_s"]
            lat_text = f"{statistics.median(lat):.2f} ({lat[-1]:.2f})" if lat else "-"
            enc = r["stack_cpu_s"] if r["mode"].startswith("simreel") else (
                r["env_cpu_s"] - next((b["env_cpu_s"] for b in results if b["mode"] == "none"), 0.0))
            print(f"| {r['mode']} | {statistics.median(rr):.3f} | {r['hwm_growth_mb']:.1f} | {r['stored_mb']:.2f} "
                  f"| {r['videos']} | {r['discarded']} | {enc:.1f} | {lat_text} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "best": results, "runs": runs,
                                            "ratio_per_round": per_round}, indent=2))


if __name__ == "__main__":
    main()
