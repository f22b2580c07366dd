"""The physics + render loop in its own thread, feeding the asyncio side through a bounded queue.

The GL context is created, used and closed in this one thread. When the publisher falls behind,
`put` blocks the loop (backpressure) instead of growing memory.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass
from typing import Any

import mujoco

from simreel.sim import gymenv, policies
from simreel.sim.gymenv import GymEpisodeRunner
from simreel.sim.rollout import EpisodeRunner


@dataclass
class WorkerJob:
    model: mujoco.MjModel | None  # None for gymnasium:<EnvId> scenes (env_factory instead)
    width: int
    height: int
    fps: int
    cameras: list[str]  # empty: the scene's default camera (or free_camera)
    tile: bool
    free_camera: dict | None
    quality: str
    seeds: list[int]
    duration_s: float | None
    max_steps: int | None
    policy: str
    policy_params: dict[str, Any]
    policy_allow: tuple[str, ...]
    env_factory: Any = None  # gymnasium scenes: called in the worker thread, which then owns the env's GL context
    physics_dt: float = 0.0  # gymnasium scenes: the env's dt


class Cancelled(Exception):
    pass


class Handoff:
    """Bounded thread → asyncio queue. The render thread only blocks when the queue is full; it never
    waits for the event loop to run (a round trip per frame would pace the loop by the publisher)."""

    def __init__(self, maxsize: int, loop: asyncio.AbstractEventLoop) -> None:
        self._q: queue.Queue = queue.Queue(maxsize)
        self._loop = loop
        self._ready = asyncio.Event()

    def put(self, item, cancel: threading.Event) -> None:
        while True:
            try:
                self._q.put(item, timeout=0.5)
                break
            except queue.Full:
                if cancel.is_set():
                    raise Cancelled() from None
        self._loop.call_soon_threadsafe(self._ready.set)

    async def get(self):
        while True:
            try:
                return self._q.get_nowait()
            except queue.Empty:
                self._ready.clear()
            try:  # re-check after clearing, so a put between the two is not missed
                return self._q.get_nowait()
            except queue.Empty:
                await self._ready.wait()


def run_in_thread(job: WorkerJob, handoff: Handoff, cancel: threading.Event) -> threading.Thread:
    def put(item) -> None:
        handoff.put(item, cancel)

    def body() -> None:
        runner = None
        try:
            if job.env_factory is not None:
                runner = GymEpisodeRunner(job.env_factory, width=job.width, height=job.height, fps=job.fps)
            else:
                first = job.cameras[0] if job.cameras else job.free_camera
                runner = EpisodeRunner(job.model, width=job.width, height=job.height, fps=job.fps, camera=first,
                                       quality=job.quality, extra_cameras=job.cameras[1:],
                                       compose="tile" if job.tile else "stack")
            put(("started", runner.gl))
            for episode, seed in enumerate(job.seeds):
                if job.env_factory is not None:
                    policy = gymenv.make_policy(job.policy, runner.action_space, seed=seed, params=job.policy_params)
                else:
                    policy = policies.make_policy(job.policy, job.model, seed=seed, params=job.policy_params,
                                                  allow=job.policy_allow)

                def on_frame(f, episode=episode) -> None:
                    telemetry = {"t": f.t, "step": f.step, "reward": f.reward, "action": list(f.action)}
                    put(("frame", episode, f.index, f.t, f.pixels.tobytes(), telemetry))

                summary = runner.run_episode(seed=seed, policy=policy, duration_s=job.duration_s,
                                             max_steps=job.max_steps, on_frame=on_frame,
                                             should_stop=cancel.is_set)
                if cancel.is_set():
                    raise Cancelled()
                put(("episode", episode, summary))
            put(("done",))
        except Cancelled:
            pass
        except BaseException as e:  # noqa: BLE001 - reported to the async side as SimFailed
            try:
                put(("error", e))
            except Cancelled:
                pass
        finally:
            if runner is not None:
                runner.close()

    t = threading.Thread(target=body, name="simreel-sim", daemon=True)
    t.start()
    return t
