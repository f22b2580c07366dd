"""The physics + render loop in its own thread, feeding the asyncio side through a bounded hand-off.

The GL context is created, used and closed in this one thread. When the publisher falls behind,
the hand-off blocks the loop (backpressure) instead of growing memory. What the thread tells the
asyncio side is one of the typed messages below.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import mujoco

from simreel.handoff import Handoff
from simreel.sim import gymenv, policies
from simreel.sim.gymenv import GymEpisodeRunner
from simreel.sim.rollout import EpisodeRunner, EpisodeSummary


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


# --- what the render thread says -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RendererReady:
    gl: dict[str, str]  # backend, renderer string


@dataclass(frozen=True, slots=True)
class FrameRendered:
    episode: int
    index: int
    t: float
    pixels: bytes
    telemetry: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EpisodeRendered:
    episode: int
    summary: EpisodeSummary  # a gymenv.GymEpisodeSummary for Gymnasium scenes (says terminated/truncated)


@dataclass(frozen=True, slots=True)
class WorkerFailed:
    error: BaseException


@dataclass(frozen=True, slots=True)
class WorkerDone:
    pass


WorkerMessage = RendererReady | FrameRendered | EpisodeRendered | WorkerFailed | WorkerDone


class Cancelled(Exception):
    pass


def run_in_thread(job: WorkerJob, handoff: Handoff[WorkerMessage], cancel: threading.Event) -> threading.Thread:
    def cancelled() -> None:
        if cancel.is_set():
            raise Cancelled()

    def put(message: WorkerMessage, nbytes: int = 0) -> None:
        handoff.put(message, nbytes, check=cancelled)

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
            put(RendererReady(dict(runner.gl)))
            for episode, seed in enumerate(job.seeds):
                if job.env_factory is not None:
                    policy = gymenv.make_policy(job.policy, runner.action_space, seed=seed, params=job.policy_params)
                else:
                    policy = policies.make_policy(job.policy, job.model, seed=seed, params=job.policy_params,
                                                  allow=job.policy_allow)

                def on_frame(f, episode=episode) -> None:
                    telemetry = {"t": f.t, "step": f.step, "reward": f.reward, "action": list(f.action)}
                    pixels = f.pixels.tobytes()
                    put(FrameRendered(episode, f.index, f.t, pixels, telemetry), len(pixels))

                summary = runner.run_episode(seed=seed, policy=policy, duration_s=job.duration_s,
                                             max_steps=job.max_steps, on_frame=on_frame,
                                             should_stop=cancel.is_set)
                cancelled()
                put(EpisodeRendered(episode, summary))
            put(WorkerDone())
        except Cancelled:
            pass
        except BaseException as e:  # noqa: BLE001 - reported to the async side as SimFailed
            try:
                put(WorkerFailed(e))
            except Cancelled:
                pass
        finally:
            if runner is not None:
                runner.close()

    t = threading.Thread(target=body, name="simreel-sim", daemon=True)
    t.start()
    return t
