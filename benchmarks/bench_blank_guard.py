"""What the blank-frame guard costs per frame, side by side with the mean-brightness guard it replaced.

`FrameStats.update` runs once per frame on the thread that renders (the recorder's producer, the
simulator's loop). The previous guard computed the mean of every 4th row and column of every frame;
the current one checks the whole frame for a uniform fill, but only until the first frame that has a
drawing. Frames: the first N of Gymnasium envs at 640x480 (random actions), and an all-black render
(the worst case of the current guard: every frame is checked). Times are medians per frame of the
guard alone (the frozen-video digest, the same in both, is left out).

    python -m benchmarks.bench_blank_guard [--frames 120] [--size 640x480] [--json out.json]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from benchmarks.report import emit, machine  # noqa: E402
from simreel.media.stats import uniform_fill  # noqa: E402

ENVS = ["InvertedPendulum-v5", "Pusher-v5", "HalfCheetah-v5"]


def mean_guard(frames: list[np.ndarray]) -> float:
    """The previous guard, as it ran: the mean of every 4th row and column of every frame."""
    dark = 0
    for arr in frames:
        sample = arr[::4, ::4]
        if float(sample.sum(dtype=np.uint64)) / sample.size < 8.0:
            dark += 1
    return dark


def fill_guard(frames: list[np.ndarray]) -> int:
    """The current guard: a uniform-fill check until the first frame with a drawing."""
    checked = 0
    for arr in frames:
        checked += 1
        if uniform_fill(arr) is None:
            break
    return checked


def per_frame_us(guard, frames: list[np.ndarray], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        guard(frames)
        times.append((time.perf_counter() - t0) / len(frames) * 1e6)
    return statistics.median(times)


def rendered(env_id: str, n: int, width: int, height: int) -> list[np.ndarray]:
    import gymnasium as gym

    env = gym.make(env_id, render_mode="rgb_array", width=width, height=height)
    env.reset(seed=0)
    env.action_space.seed(0)
    frames = [env.render().copy()]
    while len(frames) < n:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        frames.append(env.render().copy())
        if term or trunc:
            env.reset()
    env.close()
    return frames


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--size", default="640x480")
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--json", nargs="?", const="", default=None)
    a = p.parse_args(argv)
    width, height = (int(v) for v in a.size.split("x"))
    cases = {env_id: rendered(env_id, a.frames, width, height) for env_id in ENVS}
    cases["all black"] = [np.zeros((height, width, 3), np.uint8) for _ in range(a.frames)]
    rows = []
    for name, frames in cases.items():
        mean_us = per_frame_us(mean_guard, frames, a.repeat)
        fill_us = per_frame_us(fill_guard, frames, a.repeat)
        rows.append({"frames": name, "n": len(frames), "mean_guard_us": round(mean_us, 1),
                     "fill_guard_us": round(fill_us, 1), "ratio": round(fill_us / mean_us, 3),
                     "flagged_by_mean_guard": mean_guard(frames) == len(frames),
                     "flagged_by_fill_guard": fill_guard(frames) == len(frames)
                     and uniform_fill(frames[-1]) is not None})
    return emit({**machine(), "size": a.size, "rows": rows}, a.json or None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
