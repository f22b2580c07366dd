"""The physics + render loop in its own thread, feeding the asyncio side through a bounded hand-off.

The GL context is created, used and closed in this one thread. When the publisher falls behind,
the hand-off blocks the loop (backpressure) instead of growing memory. What the thread tells the
asyncio side is one of the typed messages below. Each engine mode (an MJCF scene on GL, a Gymnasium
env, a batch engine's parallel worlds) is one RenderMode; `render_mode` picks it for a job.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

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
    """The run was cancelled: the thread stops without a further message."""


class Outbox:
    """The render thread's side of the hand-off. Every put waits for room, and raises Cancelled instead
    once the run is cancelled, so a blocked thread lets go as soon as nobody will read its frames."""

    __slots__ = ("_handoff", "_cancel", "_streams")

    def __init__(self, handoff: Handoff[WorkerMessage], cancel: threading.Event, streams: tuple[str, ...]) -> None:
        self._handoff = handoff
        self._cancel = cancel
        self._streams = streams

    @property
    def should_stop(self) -> Callable[[], bool]:
        return self._cancel.is_set

    def raise_if_cancelled(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    def put(self, message: WorkerMessage, nbytes: int = 0) -> None:
        self._handoff.put(message, nbytes, check=self.raise_if_cancelled)

    def frame(self, episode: int, f: FrameOut) -> None:
        """One copy of the frame (the runner reuses its buffers for the next one), tagged with its episode."""
        pixels = frame_bytes(f, self._streams)
        self.put(FrameRendered(episode, f.index, f.t, pixels, telemetry_of(f)), len(pixels))


def frame_bytes(f: FrameOut, streams: tuple[str, ...]) -> bytes:
    """The frame's planes back to back, in the run's stream order."""
    if len(streams) == 1:
        return f.pixels.tobytes()
    return b"".join([f.pixels.tobytes(), *(f.planes[s].tobytes() for s in streams[1:])])


def telemetry_of(f: FrameOut) -> dict[str, Any]:
    row = {"t": f.t, "step": f.step, "reward": f.reward, "action": list(f.action)}
    if getattr(f, "state", None):  # qpos / qvel / sensordata, or obs (job.state_fields)
        row.update(f.state)
    return row


# --- the engine modes: each renders a job's episodes onto an Outbox, in the render thread -----------


class RenderMode(Protocol):
    def run(self, out: Outbox) -> None:
        """Renders every episode: RendererReady, then frames and EpisodeRendered per episode."""

    def close(self) -> None:
        """Frees what `run` opened (a GL context), after the last message is on the hand-off."""


class EpisodesInTurn(ABC):
    """Episodes one after another on one runner that owns its GL context, created in this thread."""

    def __init__(self, job: WorkerJob) -> None:
        self.job = job
        self.runner: Any = None

    @abstractmethod
    def open_runner(self) -> Any: ...

    @abstractmethod
    def policy(self, seed: int) -> Any: ...

    def run(self, out: Outbox) -> None:
        job = self.job
        self.runner = self.open_runner()
        gl = dict(self.runner.gl)
        out.put(RendererReady(gl, {"engine": "gl", "device": gl.get("backend", ""),
                                   "renderer": gl.get("renderer", ""), "worlds": 1}))
        for episode, seed in enumerate(job.seeds):
            summary = self.runner.run_episode(seed=seed, policy=self.policy(seed), duration_s=job.duration_s,
                                              max_steps=job.max_steps, on_frame=partial(out.frame, episode),
                                              should_stop=out.should_stop)
            out.raise_if_cancelled()
            out.put(EpisodeRendered(episode, summary))

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()


class SceneEpisodes(EpisodesInTurn):
    """An MJCF scene on the GL renderer: one camera, or several stacked or tiled into one frame."""

    def open_runner(self) -> EpisodeRunner:
        job = self.job
        first = job.cameras[0] if job.cameras else job.free_camera
        return EpisodeRunner(job.model, width=job.width, height=job.height, fps=job.fps, camera=first,
                             quality=job.quality, extra_cameras=job.cameras[1:],
                             compose="tile" if job.tile else "stack", state_fields=job.state_fields,
                             streams=job.streams)

    def policy(self, seed: int) -> Any:
        job = self.job
        return policies.make_policy(job.policy, job.model, seed=seed, params=job.policy_params,
                                    allow=job.policy_allow, source=job.policy_source)


class GymEnvEpisodes(EpisodesInTurn):
    """A Gymnasium env, whose own render() gives the frames."""

    def open_runner(self) -> GymEpisodeRunner:
        job = self.job
        return GymEpisodeRunner(job.env_factory, width=job.width, height=job.height, fps=job.fps,
                                observe="obs" in job.state_fields)

    def policy(self, seed: int) -> Any:
        return gymenv.make_policy(self.job.policy, self.runner.action_space, seed=seed,
                                  params=self.job.policy_params)


class BatchedWorlds:
    """Episodes as parallel worlds on a batch engine: frames of all worlds interleave on the hand-off,
    each tagged with its episode; memory is the engine's batch plus the hand-off."""

    def __init__(self, job: WorkerJob) -> None:
        self.job = job
        self.views = max(1, len(job.cameras))

    def run(self, out: Outbox) -> None:
        from simreel.sim.batch import run_batched

        job = self.job
        tiled = job.tile and self.views > 1
        run_batched(job.engine, job.model, width=job.width, height=job.height, fps=job.fps,
                    cameras=list(job.cameras) if job.cameras else [job.free_camera], quality=job.quality,
                    options=job.engine_options, seeds=job.seeds, make_policy=self.policy,
                    duration_s=job.duration_s, max_steps=job.max_steps, max_worlds=job.max_worlds,
                    on_started=lambda info: out.put(self.ready(info)),
                    on_frame=(lambda episode, f: out.frame(episode, self.tiled(f))) if tiled else out.frame,
                    on_episode=lambda episode, s: out.put(EpisodeRendered(episode, s)),
                    should_stop=out.should_stop,
                    state_fields=[f for f in job.state_fields if f != "obs"], streams=job.streams)

    def ready(self, info: Any) -> RendererReady:
        worlds = max(1, min(len(self.job.seeds), self.job.max_worlds))
        return RendererReady({"backend": info.device, "renderer": info.renderer},
                             {"engine": info.engine, "device": info.device, "renderer": info.renderer,
                              "software": info.software, "worlds": worlds, "warmup_s": round(info.warmup_s, 3),
                              **info.details})

    def policy(self, model: Any, seed: int) -> Any:
        job = self.job
        return policies.make_policy(job.policy, model, seed=seed, params=job.policy_params,
                                    allow=job.policy_allow, source=job.policy_source)

    def tiled(self, f: FrameOut) -> FrameOut:
        """The engine stacks views; tile = side by side (for any plane: rgb, depth, segmentation)."""
        return FrameOut(f.index, f.t, f.step, self.side_by_side(f.pixels), f.reward, f.action, f.state,
                        {k: self.side_by_side(v) for k, v in (f.planes or {}).items()} or None)

    def side_by_side(self, px: np.ndarray) -> np.ndarray:
        stacked = px.reshape(self.views, px.shape[0] // self.views, *px.shape[1:])
        return np.concatenate(list(stacked), axis=1)

    def close(self) -> None:
        pass  # run_batched closes its engine


def render_mode(job: WorkerJob) -> RenderMode:
    if job.env_factory is not None:
        return GymEnvEpisodes(job)
    if job.engine != "gl":
        return BatchedWorlds(job)
    return SceneEpisodes(job)


def run_in_thread(job: WorkerJob, handoff: Handoff[WorkerMessage], cancel: threading.Event) -> threading.Thread:
    t = threading.Thread(target=render_run, args=(render_mode(job), Outbox(handoff, cancel, job.streams)),
                         name="simreel-sim", daemon=True)
    t.start()
    return t


def render_run(mode: RenderMode, out: Outbox) -> None:
    """The thread's body: the mode's messages, then WorkerDone, or WorkerFailed with what went wrong."""
    try:
        mode.run(out)
        out.put(WorkerDone())
    except Cancelled:
        pass
    except BaseException as e:  # noqa: BLE001 - reported to the async side as SimFailed
        try:
            out.put(WorkerFailed(e))
        except Cancelled:
            pass
    finally:
        mode.close()
