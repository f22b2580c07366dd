"""RunRecorder: one run of externally produced frames, driven from asyncio code.

A recorder run is always attempt 1 and has no SceneSaved (there is no MJCF to save), so it expects
videos + report (+ telemetry) artifacts. Everything it publishes goes through the simulator's own
RunPublisher: the same packing, event ids, report and abort marker.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import msgspec
import numpy as np

from simreel.contract import events as ev
from simreel.transport import framecodec
from simreel.contract import streams as stream_planes
from simreel.runtime import log as logs
from simreel.transport.bus import Bus
from simreel.media.stats import FrameStats
from simreel.contract.outputs import expected_artifacts
from simreel.transport.run_publisher import DEFAULT_INFLIGHT_BYTES, EpisodeOutcome, RunPublisher

# FRAMES messages of a recorder are cut at 256 KiB (3-4 compressed 640x480 frames) instead of the
# server's max_payload (1 MiB): each message is copied three times on its way out (joined, encoded,
# queued by nats-py), and in a training process those transient megabytes are its peak memory.
# Measured with HalfCheetah-v5 640x480: peak RSS over rendering alone +21.7 -> +16.9 MiB.
RECORDER_BATCH_BYTES = 256 * 1024

ATTEMPT = 1

__all__ = ["ATTEMPT", "DEFAULT_INFLIGHT_BYTES", "RecorderError", "RunRecorder"]


class RecorderError(RuntimeError):
    """Used out of order (a frame before start, an episode after complete, …), or it cannot publish."""


class RunRecorder:
    """Publishes one run made of externally produced frames. Not thread-safe: use it from one loop."""

    def __init__(
        self,
        bus: Bus,
        *,
        run_id: str,
        width: int,
        height: int,
        fps: int,
        outputs: ev.OutputSpec | None = None,
        session: str = "default",
        episodes: int = 1,
        scene: str = "recorder",
        gl_backend: str = "",
        gl_renderer: str = "",
        physics_dt: float = 0.0,
        cameras: Sequence[str] = (),
        frames_per_episode: Sequence[int] | None = None,
        report: Mapping[str, Any] | None = None,
        inflight_bytes: int = DEFAULT_INFLIGHT_BYTES,
        logger: Any = None,
        frame_compression: str = framecodec.DEFAULT,
        max_batch_bytes: int | None = RECORDER_BATCH_BYTES,
        streams: Sequence[str] = ("rgb",),
        perception: ev.Perception | None = None,
    ) -> None:
        """`streams` beyond rgb (simreel.contract.streams): each frame is its rgb24 pixels followed by those
        planes; `perception` tells readers how to read them (SimStarted.perception)."""
        if round(fps) != fps:
            raise ValueError(f"fps must be a whole number (the video's time base is 1/fps), got {fps}")
        self.bus = bus
        self.run_id = run_id
        self.width, self.height, self.fps = int(width), int(height), int(fps)
        self.outputs = outputs or ev.OutputSpec()
        self.session = session
        self.episodes = int(episodes)
        self.scene = scene
        self.gl = {"backend": gl_backend, "renderer": gl_renderer}
        self.physics_dt = float(physics_dt)
        self.cameras = list(cameras)
        self._frames_per_episode = list(frames_per_episode) if frames_per_episode else [0] * self.episodes
        self._report_extra = dict(report or {})
        self.publisher = RunPublisher(bus, run_id=run_id, attempt=ATTEMPT, session=session, fps=self.fps,
                                      frame_width=self.width, frame_height=self.height, inflight_bytes=inflight_bytes,
                                      compression=frame_compression, max_batch_bytes=max_batch_bytes,
                                      streams=streams)
        self.perception = perception
        self.frame_compression = frame_compression
        self.log = (logger or logs.get(__name__)).bind(run_id=run_id)
        self.started: ev.SimStarted | None = None
        self.completed: ev.SimCompleted | None = None
        self.episode = 0  # the episode frames currently go to
        self._stats: FrameStats | None = None
        self._ep_frames = 0
        self._ep_t0 = 0.0

    @property
    def total_frames(self) -> int:
        return self.publisher.total_frames + self._ep_frames

    @property
    def frame_bytes(self) -> int:
        return stream_planes.frame_bytes(self.width, self.height, self.publisher.streams)

    @property
    def expected_artifacts(self) -> int:
        assert self.started is not None
        return expected_artifacts(self.started, scene_saved=False)

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> ev.SimStarted:
        if self.started is not None:
            raise RecorderError(f"run {self.run_id} already started")
        started = self.publisher.started(
            scene=self.scene, episodes=self.episodes, frames_per_episode=self._frames_per_episode,
            width=self.width, height=self.height, outputs=self.outputs, cameras=self.cameras,
            physics_dt=self.physics_dt, gl=self.gl, perception=self.perception)
        await self.bus.publish(started)
        self.started = started
        self.log.info("recording_started", width=self.width, height=self.height, fps=self.fps,
                      episodes=self.episodes)
        return started

    def _open_episode(self) -> FrameStats:
        if self.started is None:
            raise RecorderError("start() the run before adding frames")
        if self.completed is not None or self.episode >= self.episodes:
            raise RecorderError(f"run {self.run_id} declared {self.episodes} episode(s); all have ended")
        if self._stats is None:
            self._stats = FrameStats(self.width, self.height)
            self._ep_frames = 0
            self._ep_t0 = time.monotonic()
        return self._stats

    async def add_frame(self, pixels: bytes | bytearray | np.ndarray, telemetry: dict[str, Any] | None = None, *,
                        t: float | None = None) -> None:
        """Append a frame to the current episode. `t` defaults to index/fps (the video's clock).
        `telemetry` must be msgpack-able (plain numbers, strings, lists, dicts): it becomes one
        row of telemetry.jsonl."""
        stats = self._open_episode()
        index = self._ep_frames
        rgb = pixels
        if len(self.publisher.streams) > 1:  # the rgb plane first, then the other streams' planes
            rgb = memoryview(pixels).cast("B")[:self.width * self.height * 3]
        stats.update(rgb)  # also checks size and dtype, with a precise message
        data = pixels if isinstance(pixels, (bytes, bytearray)) else np.ascontiguousarray(pixels).tobytes()
        await self.publisher.frame(self.episode, index, index / self.fps if t is None else float(t), data, telemetry)
        self._ep_frames += 1

    async def end_episode(self, *, seed: int = -1, steps: int | None = None, episode_return: float = 0.0,
                          terminated: bool = False, truncated: bool = False, sim_time_s: float | None = None,
                          extra: Mapping[str, Any] | None = None) -> ev.EpisodeEnded:
        """Close the current episode: its `last` batch lets the encoder finish the file at once."""
        stats = self._open_episode()
        frames = self._ep_frames
        warnings = stats.warnings() if frames else ["no frames were recorded in this episode"]
        outcome = EpisodeOutcome(
            seed=int(seed), steps=frames if steps is None else int(steps), frames=frames,
            episode_return=float(episode_return), terminated=bool(terminated), truncated=bool(truncated),
            sim_time_s=frames / self.fps if sim_time_s is None else float(sim_time_s),
            wall_s=time.monotonic() - self._ep_t0, blank=stats.black, frozen=stats.frozen, warnings=warnings)
        ended = await self.publisher.end_episode(self.episode, outcome, extra)
        self._stats, self._ep_frames = None, 0
        await self.bus.publish(ended)
        if warnings:
            self.log.warning("episode_warnings", episode=self.episode, warnings=warnings)
        self.log.info("episode_recorded", episode=self.episode, frames=frames, wall_s=round(outcome.wall_s, 2))
        self.episode += 1
        return ended

    async def complete(self, report: Mapping[str, Any] | None = None) -> ev.SimCompleted:
        """SimCompleted with the run report; every declared episode must have ended."""
        if self.started is None:
            raise RecorderError("start() the run before completing it")
        if self._stats is not None or self.episode < self.episodes:
            raise RecorderError(f"run {self.run_id}: {self.episode}/{self.episodes} episode(s) ended; "
                                "call end_episode() for each before complete()")
        full = self.publisher.report(
            scene=self.scene, gl=self.gl,
            render={"width": self.width, "height": self.height, "fps": self.fps, "cameras": self.cameras},
            physics_dt=self.physics_dt,
            extra={"source": "recorder", "outputs": msgspec.to_builtins(self.outputs),
                   **({"streams": stream_planes.report(self.publisher.streams, self.perception, width=self.width,
                                                       height=self.height)}
                      if len(self.publisher.streams) > 1 else {}),
                   **self._report_extra, **dict(report or {})})
        done = await self.publisher.completed(self.started, full, scene_saved=False)
        await self.bus.publish(done)
        self.completed = done
        self.log.info("recording_completed", frames=done.frames, wall_s=round(done.wall_s, 2),
                      expected_artifacts=done.expected_artifacts)
        return done

    async def fail(self, message: str, *, code: ev.FailureCode = "internal") -> ev.SimFailed:
        """Give up on the run: the abort marker releases the encoder, SimFailed tells everyone why."""
        if self.started is not None:
            await self.publisher.abort(self.episode)
        failed = self.publisher.failed(code, message)
        await self.bus.publish(failed)
        self._stats = None
        self.log.error("recording_failed", code=code, reason=message[:300])
        return failed
