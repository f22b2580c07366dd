"""The publishing half of a simulator, shared by the simulator service and by anything else that
produces frames (simreel.recorder: a Gymnasium env, a game, a camera).

It owns what every frame producer must say the same way: the FramePacker of each episode (frames
in max_payload-sized FrameBatch messages, published with a cap on bytes in flight), the events of a
run (SimStarted, EpisodeEnded, SimCompleted, SimFailed) with deterministic ids, the run report, and
the one abort marker that releases an encoder waiting on a dead attempt.

Frames are published here (they are the data plane, not events). Events are only *built* here and
handed back: the caller publishes them, or returns/yields them to the bus, which publishes before it
acks. Every built event is validated by a wire round trip, because Struct constructors do not check
the limits in the types.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import nats.errors

from simreel.contract import events as ev
from simreel.transport import framecodec
from simreel.contract import streams as stream_planes
from simreel.contract import keep
from simreel.transport.bus import FramePublisher, HandlerBus
from simreel.transport.framing import FramePacker
from simreel.contract.outputs import expected_artifacts

DEFAULT_INFLIGHT_BYTES = 16 * 1024 * 1024
# What an unreachable or slow NATS raises while a failing run sends its abort marker.
_GONE = (nats.errors.Error, asyncio.TimeoutError, OSError)


def validated(event: ev.Event) -> ev.Event:
    """Struct constructors do not check constraints; a wire round trip does, with the field's path."""
    ev.decode(ev.encode(event))
    return event


@dataclass(frozen=True, slots=True)
class EpisodeOutcome:
    """What a producer knows when an episode ends; becomes EpisodeEnded and a line of the report."""

    seed: int
    steps: int
    frames: int
    episode_return: float = 0.0
    terminated: bool = False
    truncated: bool = False
    sim_time_s: float = 0.0
    wall_s: float = 0.0
    blank: bool = False
    frozen: bool = False
    warnings: Sequence[str] = ()


def decision_event(run_id: str, attempt: int, session: str, episode: int,
                   decision: "keep.Decision") -> ev.EpisodeKept | ev.EpisodeDiscarded:
    """EpisodeKept / EpisodeDiscarded of one candidate, with a deterministic id: a redelivered or
    retried producer that reaches the same decision announces the same fact."""
    o = decision.outcome
    kind, cls = ("kept", ev.EpisodeKept) if decision.kept else ("discarded", ev.EpisodeDiscarded)
    return validated(cls(
        event_id=f"{kind}-{run_id}-{attempt}-{episode}", run_id=run_id, attempt=attempt, session=session,
        episode=episode, candidate=o.index, rule=decision.rule[:500], reason=decision.reason[:2000], seed=o.seed,
        steps=o.length, episode_return=float(o.episode_return), terminated=o.terminated, truncated=o.truncated))


class RunKeeper:
    """A request's keep rule over its run's episodes (`outputs.keep`): outcomes go through the Keeper in
    episode order (a batch engine may end episodes out of order: later ones wait for earlier ones),
    and each decision becomes EpisodeKept / EpisodeDiscarded of this attempt."""

    def __init__(self, rule: "keep.Rule", pub: "RunPublisher") -> None:
        self.keeper = keep.Keeper(rule)
        self.pub = pub
        self._ended: dict[int, EpisodeOutcome] = {}
        self._next = 0

    def ended(self, episode: int, o: EpisodeOutcome) -> list[ev.Event]:
        self._ended[episode] = o
        out: list[keep.Decision] = []
        while self._next in self._ended:
            e = self._ended.pop(self._next)
            out += self.keeper.push(keep.Outcome(index=self._next, seed=e.seed, length=e.steps,
                                                 episode_return=e.episode_return, terminated=e.terminated,
                                                 truncated=e.truncated))
            self._next += 1
        return self._events(out)

    def close(self) -> list[ev.Event]:
        return self._events(self.keeper.close())

    def _events(self, decisions: list[keep.Decision]) -> list[ev.Event]:
        p = self.pub
        return [decision_event(p.run_id, p.attempt, p.session, d.outcome.index, d) for d in decisions]


class RunPublisher:
    """Publishes one attempt of one run. Not thread-safe: use it from one event loop.

    `frame_width`/`frame_height` are those of the frames on the wire (several stacked views make a
    frame taller than one view; SimStarted names the view's size).
    """

    def __init__(self, bus: HandlerBus, *, run_id: str, attempt: int, session: str, fps: int, frame_width: int,
                 frame_height: int, inflight_bytes: int = DEFAULT_INFLIGHT_BYTES,
                 compression: str = framecodec.DEFAULT, max_batch_bytes: int | None = None,
                 streams: Sequence[str] = ("rgb",)) -> None:
        self.bus = bus
        self.run_id = run_id
        self.attempt = attempt
        self.session = session
        self.fps = fps
        self.frame_width, self.frame_height = frame_width, frame_height
        self.compression = compression
        self.max_batch_bytes = max_batch_bytes  # below the server's max_payload: smaller transient copies
        self.streams = list(streams)  # every frame's planes, in this order (simreel.contract.streams)
        self._frame_streams = stream_planes.frame_streams(self.streams)
        self.frames = FramePublisher(bus, inflight_bytes)
        self.episodes: list[dict[str, Any]] = []  # one report line per ended episode
        self.total_frames = 0
        self.t0 = time.monotonic()
        # One packer per open episode: a batch engine renders several episodes at once.
        self._packers: dict[int, FramePacker] = {}

    @property
    def sent(self) -> int:
        """Bytes of FrameBatch messages published so far (after compression)."""
        return self.frames.sent

    # --- events ------------------------------------------------------------------------------------

    def started(self, *, scene: str, episodes: int, frames_per_episode: Sequence[int], width: int, height: int,
                outputs: ev.OutputSpec, cameras: Sequence[str] = (), views: int = 1, tile: bool = False,
                physics_dt: float = 0.0, gl: Mapping[str, str] | None = None, engine: str = "gl",
                worlds: int = 1, telemetry_names: Mapping[str, list[str]] | None = None,
                perception: ev.Perception | None = None) -> ev.SimStarted:
        gl = gl or {}
        self.t0 = time.monotonic()
        return validated(ev.SimStarted(
            event_id=f"started-{self.run_id}-{self.attempt}", run_id=self.run_id, attempt=self.attempt, scene=scene,
            episodes=episodes, frames_per_episode=list(frames_per_episode), fps=self.fps, width=width, height=height,
            cameras=list(cameras), views=views, tile=tile, physics_dt=float(physics_dt),
            gl_backend=gl.get("backend", ""), gl_renderer=gl.get("renderer", ""), session=self.session,
            outputs=outputs, frame_compression=self.compression, engine=engine, worlds=worlds,
            telemetry_names=dict(telemetry_names or {}), streams=list(self.streams), perception=perception))

    async def end_episode(self, episode: int, outcome: EpisodeOutcome,
                          extra: Mapping[str, Any] | None = None) -> ev.EpisodeEnded:
        """Close the episode's frames (its `last` batch lets the encoder finish the file at once), wait
        until they are stored, and build its EpisodeEnded; `extra` goes to the episode's report line."""
        for b in self._packer_for(episode).flush(last=True):
            await self.frames.publish(b)
        await self.frames.flush()
        self._packers.pop(episode, None)
        first = self.total_frames
        self.total_frames += outcome.frames
        o = outcome
        self.episodes.append({
            "episode": episode, "seed": o.seed, "steps": o.steps, "frames": o.frames,
            # where this episode sits in the concatenated video (layout concat/both)
            "concat_first_frame": first, "concat_start_s": first / self.fps,
            "return": o.episode_return, "terminated": o.terminated, "truncated": o.truncated,
            "sim_time_s": o.sim_time_s, "wall_s": round(o.wall_s, 3), "blank": o.blank, "frozen": o.frozen,
            "warnings": list(o.warnings), **dict(extra or {})})
        return validated(ev.EpisodeEnded(
            event_id=f"ended-{self.run_id}-{self.attempt}-{episode}", run_id=self.run_id, attempt=self.attempt,
            episode=episode, seed=o.seed, steps=o.steps, frames=o.frames, episode_return=float(o.episode_return),
            terminated=o.terminated, truncated=o.truncated, sim_time_s=float(o.sim_time_s), wall_s=float(o.wall_s),
            blank=o.blank, frozen=o.frozen, warnings=list(o.warnings)))

    def report(self, *, scene: str, gl: Mapping[str, str], render: Mapping[str, Any], physics_dt: float,
               extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The run report (report.json): the same skeleton whoever produced the frames; `extra` is
        merged last (a recorder's caller may add or override fields)."""
        return {
            "run_id": self.run_id, "attempt": self.attempt, "scene": scene, "gl": dict(gl), "render": dict(render),
            "physics_dt": physics_dt, "episodes": self.episodes,
            "timings": {"wall_s": round(time.monotonic() - self.t0, 3), "frames_published_bytes": self.frames.sent},
            **dict(extra or {}),
        }

    async def completed(self, spec: ev.SimRequested | ev.SimStarted, report: Mapping[str, Any], *,
                        scene_saved: bool) -> ev.SimCompleted:
        """SimCompleted, once every frame is stored; `scene_saved`: whether a SceneSaved comes with it."""
        await self.frames.flush()
        return validated(ev.SimCompleted(
            event_id=f"completed-{self.run_id}-{self.attempt}", run_id=self.run_id, attempt=self.attempt,
            episodes=spec.episodes, frames=self.total_frames, wall_s=time.monotonic() - self.t0, session=self.session,
            expected_artifacts=expected_artifacts(spec, scene_saved=scene_saved), report=dict(report)))

    def failed(self, code: ev.FailureCode, message: str, field: str | None = None) -> ev.SimFailed:
        return ev.SimFailed.of(self.run_id, self.attempt, code, message, field)

    # --- frames ------------------------------------------------------------------------------------

    async def frame(self, episode: int, index: int, t: float, pixels: bytes, telemetry: dict[str, Any] | None) -> None:
        for b in self._packer_for(episode).add(index, t, pixels, telemetry):
            await self.frames.publish(b)

    async def abort(self, episode: int) -> None:
        """Tell an encoder waiting on this attempt that no more frames will come. Best effort: the run
        is failing already, and the encoder also notices the SimFailed."""
        marker = self._packer_for(episode).abort()
        self._packers.clear()
        with contextlib.suppress(*_GONE):
            await self.frames.flush()  # pending frames first: the marker must come after them
        with contextlib.suppress(*_GONE):
            for b in marker:
                await self.frames.publish(b)
            await self.frames.flush()

    def _packer_for(self, episode: int) -> FramePacker:
        packer = self._packers.get(episode)
        if packer is None:
            packer = self._packers[episode] = FramePacker(
                self.run_id, self.attempt, episode, self.frame_width, self.frame_height,
                min(self.bus.max_payload, self.max_batch_bytes or self.bus.max_payload),
                compression=self.compression, streams=self._frame_streams)
        return packer
