"""The physics + render loop in its own thread, feeding the asyncio side through a bounded hand-off.

The GL context is created, used and closed in this one thread. When the publisher falls behind,
the hand-off blocks the loop (backpressure) instead of growing memory. What the thread tells the
asyncio side is one of the typed messages below.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from simreel.transport.handoff import Handoff
from simreel.sim import gymenv, policies
from simreel.sim.gymenv import GymEpisodeRunner
from simreel.sim.rollout import EpisodeRunner, EpisodeSummary, FrameOut


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
    engine: str = "gl"  # another render engine runs the episodes as parallel worlds (simreel.sim.batch)
    engine_options: dict[str, Any] = field(default_factory=dict)
    max_worlds: int = 64
    state_fields: tuple[str, ...] = ()  # qpos/qvel/sensordata (MJCF) or obs (gymnasium) per frame
    policy_source: bytes | None = None  # a `file:` policy's content, read from the request's files
    streams: tuple[str, ...] = ("rgb",)  # planes of every frame, in this order (simreel.contract.streams)


# --- what the render thread says -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RendererReady:
    gl: dict[str, str]  # backend, renderer string
    # The render engine: engine, device, renderer, worlds (episodes at once), warmup_s.
    engine: dict[str, Any] = field(default_factory=dict)


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

    def frame_bytes(f) -> bytes:
        """The frame's planes back to back, in the run's stream order."""
        if len(job.streams) == 1:
            return f.pixels.tobytes()
        return b"".join([f.pixels.tobytes(), *(f.planes[s].tobytes() for s in job.streams[1:])])

    def telemetry_of(f) -> dict[str, Any]:
        row = {"t": f.t, "step": f.step, "reward": f.reward, "action": list(f.action)}
        if getattr(f, "state", None):  # qpos / qvel / sensordata, or obs (job.state_fields)
            row.update(f.state)
        return row

    def batched() -> None:
        """Episodes as parallel worlds on a batch engine: frames of all worlds interleave on the
        hand-off, each tagged with its episode; memory is the engine's batch plus the hand-off."""
        from simreel.sim.batch import run_batched

        views = max(1, len(job.cameras))
        cameras = list(job.cameras) if job.cameras else [job.free_camera]

        def on_started(info) -> None:
            worlds = max(1, min(len(job.seeds), job.max_worlds))
            put(RendererReady({"backend": info.device, "renderer": info.renderer},
                              {"engine": info.engine, "device": info.device, "renderer": info.renderer,
                               "software": info.software, "worlds": worlds, "warmup_s": round(info.warmup_s, 3),
                               **info.details}))

        def side_by_side(px):
            """The engine stacks views; tile = side by side (for any plane: rgb, depth, segmentation)."""
            h = px.shape[0] // views
            stacked = px.reshape(views, h, *px.shape[1:])
            return np.concatenate(list(stacked), axis=1)

        def on_frame(episode: int, f) -> None:
            if job.tile and views > 1:
                f = FrameOut(f.index, f.t, f.step, side_by_side(f.pixels), f.reward, f.action, f.state,
                             {k: side_by_side(v) for k, v in (f.planes or {}).items()} or None)
            pixels = frame_bytes(f)
            put(FrameRendered(episode, f.index, f.t, pixels, telemetry_of(f)), len(pixels))

        def make(model, seed: int):
            return policies.make_policy(job.policy, model, seed=seed, params=job.policy_params,
                                        allow=job.policy_allow, source=job.policy_source)

        run_batched(job.engine, job.model, width=job.width, height=job.height, fps=job.fps, cameras=cameras,
                    quality=job.quality, options=job.engine_options, seeds=job.seeds, make_policy=make,
                    duration_s=job.duration_s, max_steps=job.max_steps, max_worlds=job.max_worlds,
                    on_started=on_started, on_frame=on_frame,
                    on_episode=lambda episode, s: put(EpisodeRendered(episode, s)), should_stop=cancel.is_set,
                    state_fields=[f for f in job.state_fields if f != "obs"], streams=job.streams)
        cancelled()
        put(WorkerDone())

    def body() -> None:
        runner = None
        try:
            if job.engine != "gl" and job.env_factory is None:
                batched()
                return
            if job.env_factory is not None:
                runner = GymEpisodeRunner(job.env_factory, width=job.width, height=job.height, fps=job.fps,
                                          observe="obs" in job.state_fields)
            else:
                first = job.cameras[0] if job.cameras else job.free_camera
                runner = EpisodeRunner(job.model, width=job.width, height=job.height, fps=job.fps, camera=first,
                                       quality=job.quality, extra_cameras=job.cameras[1:],
                                       compose="tile" if job.tile else "stack", state_fields=job.state_fields,
                                       streams=job.streams)
            gl = dict(runner.gl)
            put(RendererReady(gl, {"engine": "gl", "device": gl.get("backend", ""),
                                   "renderer": gl.get("renderer", ""), "worlds": 1}))
            for episode, seed in enumerate(job.seeds):
                if job.env_factory is not None:
                    policy = gymenv.make_policy(job.policy, runner.action_space, seed=seed, params=job.policy_params)
                else:
                    policy = policies.make_policy(job.policy, job.model, seed=seed, params=job.policy_params,
                                                  allow=job.policy_allow, source=job.policy_source)

                def on_frame(f, episode=episode) -> None:
                    pixels = frame_bytes(f)
                    put(FrameRendered(episode, f.index, f.t, pixels, telemetry_of(f)), len(pixels))

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
