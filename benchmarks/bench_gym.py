"""gymnasium's RecordVideo vs simreel.gym.RecordVideo vs rendering without recording.

One HalfCheetah-v5 episode at 640×480, same seeds, same actions, same number of steps, each variant in
a fresh interpreter (so VmHWM, the peak RSS, belongs to that variant alone):

- `none`: env.step() + env.render() every step, frames dropped (the cost of rendering alone);
- `gymnasium`: gymnasium.wrappers.RecordVideo (frames kept in a list, moviepy encodes at reset/close);
- `simreel`: simreel.gym.RecordVideo against a running stack (nats-server + encoder + uploader, started
  here once, as a deployment would have it), frames streamed while the episode runs.

Per variant: the episode loop's wall time, the time from the last step to the video being in
video_folder (gymnasium: its blocking encode in close(); simreel: until ArtifactStored), the total,
its ratio to `none`, the env process's peak RSS growth, and CPU seconds in the env process (with its
children: moviepy's ffmpeg) and, for simreel, in the stack's processes (encoder, uploader, nats).
A warm-up recording (GL context, connection, moviepy import) runs before the measured episode and
is not timed.

    pip install moviepy                       # benchmark-only: gymnasium's writer
    python benchmarks/bench_gym.py --steps 300 [--repeat 2] [--width 640 --height 480] [--json bench_gym.json]
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
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

VARIANTS = ("none", "gymnasium", "simreel")

_CHILD = textwrap.dedent("""
    import json, os, resource, sys, time
    import gymnasium as gym

    mode, steps, width, height, folder = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

    def hwm_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    def cpu_s():  # this process and its children (moviepy encodes in an ffmpeg child)
        r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime

    env = gym.make("HalfCheetah-v5", render_mode="rgb_array", width=width, height=height, max_episode_steps=steps)
    if mode == "gymnasium":
        env = gym.wrappers.RecordVideo(env, folder, episode_trigger=lambda e: True, disable_logger=True)
    elif mode == "simreel":
        from simreel.gym import RecordVideo
        env = RecordVideo(env, folder, episode_trigger=lambda e: True)
    render = mode == "none"

    env.action_space.seed(0)
    env.reset(seed=1000)                      # warm-up: GL context, moviepy / NATS, encoder
    for _ in range(5):
        env.step(env.action_space.sample())
        if render:
            env.render()
    if mode != "none":
        env.stop_recording()
    if mode == "simreel":
        env.wait(120)

    hwm0, cpu0 = hwm_mb(), cpu_s()
    t0 = time.monotonic()
    env.reset(seed=0)
    if render:
        env.render()
    done, frames = False, 1
    while not done:
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        if render:
            env.render()
        frames += 1
        done = terminated or truncated
    t_end = time.monotonic()
    env.close()
    t_closed = time.monotonic()
    out = {"mode": mode, "frames": frames, "loop_s": t_end - t0, "close_s": t_closed - t_end,
           "hwm_growth_mb": hwm_mb() - hwm0, "env_cpu_s": cpu_s() - cpu0}
    if mode == "gymnasium":
        path = os.path.join(folder, "rl-video-episode-1.mp4")
        out.update(stored_s=t_closed - t_end, bytes=os.path.getsize(path))
    elif mode == "simreel":
        [run] = [r for r in env._recorder.runs if r.meta["name"].endswith("episode-1")]
        out.update(stored_s=run.stored_at - t_end, bytes=os.path.getsize(env.videos[-1]["path"]),
                   frames_stored=run.frames)
    else:
        out.update(stored_s=0.0, bytes=0)
    out["total_s"] = out["loop_s"] + out["stored_s"]
    print(json.dumps(out))
""")


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def run_variant(mode: str, steps: int, width: int, height: int, folder: Path, env: dict) -> dict:
    p = subprocess.run([sys.executable, "-c", _CHILD, mode, str(steps), str(width), str(height), str(folder)],
                       env=env, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def wait_for_services(url: str, names=("encoder", "uploader"), timeout: float = 60.0) -> None:
    """Service start-up (imports, GL probe) must not run during the first measured variant."""
    import asyncio

    from simreel.bus import Bus
    from simreel.config import NatsSettings

    async def ready() -> None:
        bus = await Bus.connect(NatsSettings(url=url))
        try:
            deadline = time.monotonic() + timeout
            for name in names:
                while True:
                    try:
                        await bus.js.consumer_info("EVENTS", name)
                        break
                    except Exception:  # noqa: BLE001 - not created yet
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"service {name} did not start within {timeout:.0f}s") from None
                        await asyncio.sleep(0.2)
        finally:
            await bus.close()

    asyncio.run(ready())
    time.sleep(1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of all variants, interleaved; the fastest total of each is reported "
                         "(a shared machine's load only ever makes a run slower)")
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args()

    from simreel.embedded import Stack

    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-gym-") as tmp, \
            Stack(out_dir=Path(tmp) / "store", services=("encoder", "uploader")) as stack:
        env = {**os.environ, "SIMREEL_NATS_URL": stack.url, "SIMREEL_LOG_LEVEL": "warning"}
        wait_for_services(stack.url)
        runs: dict[str, list[dict]] = {m: [] for m in variants}
        for round_ in range(a.repeat):
            for mode in variants:
                pids = [p.pid for procs in stack.procs.values() for p in procs] + [stack.nats.proc.pid]
                ticks0 = sum(_cpu_ticks(pid) for pid in pids)
                r = run_variant(mode, a.steps, a.width, a.height, Path(tmp) / f"{mode}-{round_}", env)
                r["stack_cpu_s"] = (sum(_cpu_ticks(pid) for pid in pids) - ticks0) / os.sysconf("SC_CLK_TCK")
                runs[mode].append(r)
                print(f"{mode}: {json.dumps(r)}", file=sys.stderr, flush=True)
        results = [min(runs[m], key=lambda r: r["total_s"]) for m in variants]

    base = next((r["total_s"] for r in results if r["mode"] == "none"), None)
    print(f"\nHalfCheetah-v5 {a.width}x{a.height}, {a.steps} steps ({results[0]['frames']} frames), "
          f"{platform.machine()} {os.cpu_count()} cores, MUJOCO_GL={os.environ.get('MUJOCO_GL')}\n")
    print(f"best of {a.repeat} interleaved round(s)\n")
    print("| variant | episode loop s | last step → video stored s | total s | × no-recording "
          "| env peak RSS growth MB | env CPU s | stack CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        ratio = f"{r['total_s'] / base:.2f}" if base else "-"
        stack_cpu = f"{r['stack_cpu_s']:.1f}" if r["mode"] == "simreel" else "-"
        print(f"| {r['mode']} | {r['loop_s']:.1f} | {r['stored_s']:.2f} | {r['total_s']:.1f} | {ratio} "
              f"| {r['hwm_growth_mb']:.1f} | {r['env_cpu_s']:.1f} | {stack_cpu} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"steps": a.steps, "width": a.width, "height": a.height,
                                            "repeat": a.repeat, "best": results, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
