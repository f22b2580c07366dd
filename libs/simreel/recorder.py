"""The publishing half of a simulator, for anything that produces frames (a Gymnasium env, a game, a
camera): SimStarted → FrameBatch… → EpisodeEnded per episode → SimCompleted.

Downstream nothing changes: the encoder claims the SimStarted and encodes while frames arrive, the
uploader stores videos, telemetry and the report. Memory stays bounded on the producer's side: frames
are packed into max_payload-sized messages and published with `publish_async` under a cap on bytes in
flight (simreel.bus.FramePublisher, as the simulator does), so a slow NATS makes `add_frame` wait
instead of growing a buffer.

A recorder run is always attempt 1 and has no SceneSaved (there is no MJCF to save), so it expects
videos + report (+ telemetry) artifacts. Event ids are deterministic like the simulator's, so a
republished fact is dropped by JetStream's duplicate window.

Usage (inside a running event loop; one recorder per run)::

    rec = RunRecorder(bus, run_id="cam-1", width=640, height=480, fps=30)
    await rec.start()
    for pixels in frames:                      # HxWx3 uint8 arrays or rgb24 bytes
        await rec.add_frame(pixels, {"reward": 0.0})
    await rec.end_episode(seed=0, steps=n)
    await rec.complete()                       # → SimCompleted; ArtifactStored events follow
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import msgspec
import numpy as np

from . import events as ev
from . import log as logs
from .bus import Bus, FramePublisher
from .client import Client
from .config import NatsSettings
from . import framecodec
from .framing import FramePacker
from .media.stats import FrameStats
from .outputs import video_outputs

ATTEMPT = 1
DEFAULT_INFLIGHT_BYTES = 16 * 1024 * 1024


def embedded_services(env: Mapping[str, str]) -> tuple[str, ...]:
    """Recorder runs need no simulator; retention only matters when a retention policy is set."""
    extra = ("retention",) if any(k.startswith("SIMREEL_RETENTION_") and v for k, v in env.items()) else ()
    return ("encoder", "uploader", *extra)


class RecorderError(RuntimeError):
    """Used out of order (a frame before start, an episode after complete, …), or it cannot publish."""


def _validated(event: ev.Event) -> ev.Event:
    """Struct constructors do not check constraints; a wire round trip does, with the field's path."""
    ev.decode(ev.encode(event))
    return event


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
    ) -> None:
        if round(fps) != fps:
            raise ValueError(f"fps must be a whole number (the video's time base is 1/fps), got {fps}")
        self.bus = bus
        self.run_id = run_id
        self.width, self.height, self.fps = int(width), int(height), int(fps)
        self.outputs = outputs or ev.OutputSpec()
        self.session = session
        self.episodes = int(episodes)
        self.scene = scene
        self.gl_backend, self.gl_renderer = gl_backend, gl_renderer
        self.physics_dt = float(physics_dt)
        self.frame_compression = frame_compression
        self.cameras = list(cameras)
        self._frames_per_episode = list(frames_per_episode) if frames_per_episode else [0] * self.episodes
        self._report_extra = dict(report or {})
        self.publisher = FramePublisher(bus, inflight_bytes)
        self.log = (logger or logs.get(__name__)).bind(run_id=run_id)
        self.started: ev.SimStarted | None = None
        self.completed: ev.SimCompleted | None = None
        self.episode = 0  # the episode frames currently go to
        self.total_frames = 0
        self._packer: FramePacker | None = None
        self._stats: FrameStats | None = None
        self._ep_frames = 0
        self._ep_t0 = 0.0
        self._t0 = 0.0
        self._summaries: list[dict[str, Any]] = []

    # --- what the run will produce -----------------------------------------------------------------

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 3

    @property
    def expected_artifacts(self) -> int:
        """videos + report.json (+ telemetry.jsonl); no scene.xml, recorder runs have no SceneSaved."""
        assert self.started is not None
        return video_outputs(self.started) + 1 + (1 if self.outputs.telemetry else 0)

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> ev.SimStarted:
        if self.started is not None:
            raise RecorderError(f"run {self.run_id} already started")
        started = _validated(ev.SimStarted(
            event_id=f"started-{self.run_id}-{ATTEMPT}", run_id=self.run_id, attempt=ATTEMPT, scene=self.scene,
            episodes=self.episodes, frames_per_episode=self._frames_per_episode, fps=self.fps, width=self.width,
            height=self.height, cameras=self.cameras, physics_dt=self.physics_dt, gl_backend=self.gl_backend,
            gl_renderer=self.gl_renderer, session=self.session, outputs=self.outputs,
            frame_compression=self.frame_compression))
        await self.bus.publish(started)
        self.started = started
        self._t0 = time.monotonic()
        self.log.info("recording_started", width=self.width, height=self.height, fps=self.fps,
                      episodes=self.episodes)
        return started

    def _open_episode(self) -> FramePacker:
        if self.started is None:
            raise RecorderError("start() the run before adding frames")
        if self.completed is not None or self.episode >= self.episodes:
            raise RecorderError(f"run {self.run_id} declared {self.episodes} episode(s); all have ended")
        if self._packer is None:
            self._packer = FramePacker(self.run_id, ATTEMPT, self.episode, self.width, self.height,
                                       self.bus.max_payload, compression=self.frame_compression)
            self._stats = FrameStats(self.width, self.height)
            self._ep_frames = 0
            self._ep_t0 = time.monotonic()
        return self._packer

    async def add_frame(self, pixels: bytes | np.ndarray, telemetry: dict[str, Any] | None = None, *,
                        t: float | None = None) -> None:
        """Append a frame to the current episode. `t` defaults to index/fps (the video's clock).
        `telemetry` must be msgpack-able (plain numbers, strings, lists, dicts): it becomes one
        row of telemetry.jsonl."""
        packer = self._open_episode()
        index = self._ep_frames
        self._stats.update(pixels)  # also checks size and dtype, with a precise message
        data = pixels if isinstance(pixels, bytes) else np.ascontiguousarray(pixels).tobytes()
        for batch in packer.add(index, index / self.fps if t is None else float(t), data, telemetry):
            await self.publisher.publish(batch)
        self._ep_frames += 1
        self.total_frames += 1

    async def end_episode(self, *, seed: int = -1, steps: int | None = None, episode_return: float = 0.0,
                          terminated: bool = False, truncated: bool = False, sim_time_s: float | None = None,
                          extra: Mapping[str, Any] | None = None) -> ev.EpisodeEnded:
        """Close the current episode: its `last` batch lets the encoder finish the file at once."""
        packer = self._open_episode()
        for batch in packer.flush(last=True):
            await self.publisher.publish(batch)
        await self.publisher.flush()
        stats, frames = self._stats, self._ep_frames
        warnings = stats.warnings() if frames else ["no frames were recorded in this episode"]
        wall = time.monotonic() - self._ep_t0
        ended = _validated(ev.EpisodeEnded(
            event_id=f"ended-{self.run_id}-{ATTEMPT}-{self.episode}", run_id=self.run_id, attempt=ATTEMPT,
            episode=self.episode, seed=int(seed), steps=frames if steps is None else int(steps), frames=frames,
            episode_return=float(episode_return), terminated=bool(terminated), truncated=bool(truncated),
            sim_time_s=frames / self.fps if sim_time_s is None else float(sim_time_s), wall_s=wall,
            blank=stats.black, frozen=stats.frozen, warnings=warnings))
        await self.bus.publish(ended)
        summary = {"episode": self.episode, "seed": ended.seed, "steps": ended.steps, "frames": frames,
                   "return": ended.episode_return, "terminated": ended.terminated, "truncated": ended.truncated,
                   "sim_time_s": ended.sim_time_s, "wall_s": round(wall, 3), "blank": ended.blank,
                   "frozen": ended.frozen, "warnings": warnings}
        summary.update(extra or {})
        self._summaries.append(summary)
        if warnings:
            self.log.warning("episode_warnings", episode=self.episode, warnings=warnings)
        self.log.info("episode_recorded", episode=self.episode, frames=frames, wall_s=round(wall, 2))
        self.episode += 1
        self._packer = self._stats = None
        return ended

    async def complete(self, report: Mapping[str, Any] | None = None) -> ev.SimCompleted:
        """SimCompleted with the run report; every declared episode must have ended."""
        if self.started is None:
            raise RecorderError("start() the run before completing it")
        if self._packer is not None or self.episode < self.episodes:
            raise RecorderError(f"run {self.run_id}: {self.episode}/{self.episodes} episode(s) ended; "
                                "call end_episode() for each before complete()")
        await self.publisher.flush()
        wall = time.monotonic() - self._t0
        full = {
            "run_id": self.run_id,
            "attempt": ATTEMPT,
            "scene": self.scene,
            "source": "recorder",
            "gl": {"backend": self.gl_backend, "renderer": self.gl_renderer},
            "render": {"width": self.width, "height": self.height, "fps": self.fps, "cameras": self.cameras},
            "physics_dt": self.physics_dt,
            "outputs": msgspec.to_builtins(self.outputs),
            "episodes": self._summaries,
            "timings": {"record_wall_s": round(wall, 3), "frames_published_bytes": self.publisher.sent},
            **self._report_extra,
            **dict(report or {}),
        }
        done = _validated(ev.SimCompleted(
            event_id=f"completed-{self.run_id}-{ATTEMPT}", run_id=self.run_id, attempt=ATTEMPT,
            episodes=self.episodes, frames=self.total_frames, wall_s=wall, session=self.session,
            expected_artifacts=self.expected_artifacts, report=full))
        await self.bus.publish(done)
        self.completed = done
        self.log.info("recording_completed", frames=self.total_frames, wall_s=round(wall, 2),
                      expected_artifacts=done.expected_artifacts)
        return done

    async def fail(self, message: str, *, code: str = "internal") -> ev.SimFailed:
        """Give up on the run: an `aborted` batch releases the encoder, SimFailed tells everyone why."""
        try:
            await self.publisher.flush()
        except Exception as e:  # noqa: BLE001 - failing already; the abort marker matters more
            self.log.warning("flush_failed_during_abort", error=f"{type(e).__name__}: {e}")
        if self.started is not None:
            aborter = FramePacker(self.run_id, ATTEMPT, self.episode, self.width, self.height, self.bus.max_payload,
                                  seq=10**6)
            for batch in aborter.flush(aborted=True):
                await self.publisher.publish(batch)
            await self.publisher.flush()
        failed = ev.SimFailed(event_id=f"failed-{self.run_id}-{ATTEMPT}", run_id=self.run_id, attempt=ATTEMPT,
                              code=code, message=message[:2000])
        await self.bus.publish(failed)
        self._packer = self._stats = None
        self.log.error("recording_failed", code=code, reason=message[:300])
        return failed


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncio.run does on exit: nats-py leaves helper tasks behind after unsubscribe/drain."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


# --- a synchronous façade: for producers that are not asyncio code ---------------------------------


@dataclass
class RecordedRun:
    """What became of one recorded run; filled in by the recorder thread, read after wait()/close()."""

    run_id: str
    meta: dict[str, Any] = field(default_factory=dict)  # the producer's own labels (name, episode, …)
    status: str = "recording"  # recording → storing → completed | failed | timeout
    frames: int = 0
    error: str | None = None
    artifacts: list[ev.ArtifactStored] = field(default_factory=list)
    ended_at: float | None = None  # time.monotonic() when the producer ended the run
    stored_at: float | None = None  # time.monotonic() when its last artifact was stored
    finished: bool = False
    on_result: Callable[["RecordedRun"], None] | None = field(default=None, repr=False, compare=False)

    def artifact(self, kind: str, fmt: str | None = None) -> ev.ArtifactStored | None:
        for a in self.artifacts:
            if a.kind == kind and (fmt is None or a.format == fmt):
                return a
        return None

    @property
    def store_latency_s(self) -> float | None:
        """From the producer ending the run to every artifact stored."""
        if self.ended_at is None or self.stored_at is None:
            return None
        return self.stored_at - self.ended_at


class RecorderThread:
    """A background thread that owns an event loop, the NATS connection and the RunRecorders, fed by
    any thread through a byte-bounded queue.

    Why a thread and not `asyncio.run` per video: the producer (an env's `step()`) must return at
    once, and the connection must stay serviced (pings, acks) while the producer does other work
    between recordings. Why bounded by bytes: the queue is the only place frames wait, so its limit
    is the recorder's memory footprint whatever the video's length; a slow bus blocks the producer.

    With `nats=None` it starts the embedded stack (nats-server + encoder and uploader, + retention when
    a SIMREEL_RETENTION_* policy is set) on first use, storing artifacts under `embedded_dir`,
    and stops it at close(). The stack's children are started and stopped from this same thread,
    because PR_SET_PDEATHSIG ties them to the thread that forked them.
    """

    def __init__(
        self,
        *,
        nats: NatsSettings | None = None,
        embedded_dir: Path | None = None,
        session: str = "default",
        outputs: ev.OutputSpec | None = None,
        max_queue_bytes: int = 32 * 1024 * 1024,
        inflight_bytes: int = DEFAULT_INFLIGHT_BYTES,
        logger: Any = None,
        on_result: Callable[[RecordedRun], None] | None = None,
        name: str = "simreel-recorder",
        connect_timeout: float = 30.0,
    ) -> None:
        if nats is None and embedded_dir is None:
            raise ValueError("give a NATS connection (nats=) or a directory for the embedded stack (embedded_dir=)")
        self.nats = nats
        self.embedded_dir = Path(embedded_dir) if embedded_dir is not None else None
        self.session = session
        self.outputs = outputs or ev.OutputSpec()
        self.max_queue_bytes = int(max_queue_bytes)
        self.inflight_bytes = int(inflight_bytes)
        self.log = logger or logs.get(__name__)
        self.on_result = on_result
        self.name = name
        self.connect_timeout = float(connect_timeout)
        self.runs: list[RecordedRun] = []
        self.stack = None
        self.bus: Bus | None = None
        self._cond = threading.Condition()
        self._items: collections.deque[tuple[tuple, int]] = collections.deque()
        self._bytes = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._fatal: BaseException | None = None
        self._closed = False
        self._current: RecordedRun | None = None
        # loop-thread state
        self._rec: RunRecorder | None = None
        self._run: RecordedRun | None = None
        self._waiters: set[asyncio.Task] = set()

    # --- producer side (any thread) ----------------------------------------------------------------

    @property
    def url(self) -> str | None:
        return self.stack.url if self.stack is not None else (self.nats.url if self.nats else None)

    @property
    def log_dir(self) -> Path | None:
        return self.stack.log_dir if self.stack is not None else None

    def begin(self, run_id: str, *, width: int, height: int, fps: int, meta: Mapping[str, Any] | None = None,
              on_result: Callable[[RecordedRun], None] | None = None, **recorder_kwargs: Any) -> RecordedRun:
        """Start a one-episode run; `recorder_kwargs` go to RunRecorder (scene, physics_dt, report, …).
        `on_result` (else the recorder's own) is called in the recorder thread once the run is stored
        or failed, before wait() sees it finished."""
        if self._closed:
            raise RecorderError("the recorder is closed")
        if self._current is not None:
            raise RecorderError(f"run {self._current.run_id} is still recording; end() it first")
        self._ensure_thread()
        run = RecordedRun(run_id=run_id, meta=dict(meta or {}), on_result=on_result or self.on_result)
        self._current = run
        self.runs.append(run)
        self._put(("begin", run, dict(width=width, height=height, fps=fps, **recorder_kwargs)), 0)
        return run

    def frame(self, pixels: bytes, telemetry: dict[str, Any] | None = None) -> None:
        """Queue one rgb24 frame of the current run; blocks only while the queue is full."""
        if self._current is None:
            raise RecorderError("begin() a run before sending frames")
        self._current.frames += 1
        self._put(("frame", pixels, telemetry), len(pixels))

    def end(self, *, report: Mapping[str, Any] | None = None, **episode: Any) -> RecordedRun:
        """End the current run's episode (`episode` goes to RunRecorder.end_episode) and complete it."""
        run = self._current
        if run is None:
            raise RecorderError("no run is recording")
        self._current = None
        run.ended_at = time.monotonic()
        self._put(("end", episode, dict(report or {})), 0)
        return run

    def wait(self, timeout: float | None = None) -> list[RecordedRun]:
        """Block until every ended run is stored (or failed), or the timeout passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while any(not r.finished for r in self.runs if r.ended_at is not None):
                if self._fatal is not None or self._thread is None or not self._thread.is_alive():
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(0.5 if left is None else min(left, 0.5))
        return list(self.runs)

    def close(self, timeout: float = 300.0) -> list[RecordedRun]:
        """Wait up to `timeout` for every ended run to be stored, then disconnect and stop the embedded
        stack. A run still recording is dropped (end() it first); unfinished runs get status timeout."""
        if self._closed:
            return list(self.runs)
        self._closed = True
        if self._thread is None:
            return list(self.runs)
        deadline = time.monotonic() + timeout
        if self._fatal is None and self._thread.is_alive():
            with contextlib.suppress(RecorderError):
                self._put(("stop", deadline), 0)
        self._thread.join(max(0.0, deadline - time.monotonic()) + 60)
        with self._cond:
            for r in self.runs:
                if not r.finished:
                    r.status = "timeout" if self._fatal is None else "failed"
                    r.error = r.error or (f"not stored within {timeout:.0f}s" if self._fatal is None
                                          else f"recorder failed: {self._fatal}")
                    r.finished = True
        return list(self.runs)

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            if self._fatal is not None:
                raise RecorderError(f"the recorder cannot publish: {self._fatal}") from self._fatal
            return
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._thread = threading.Thread(target=self._thread_main, name=self.name, daemon=True)
        self._thread.start()

    def _put(self, item: tuple, nbytes: int) -> None:
        with self._cond:
            while self._items and self._bytes + nbytes > self.max_queue_bytes:
                self._check_alive()
                self._cond.wait(0.5)
            self._check_alive()
            self._items.append((item, nbytes))
            self._bytes += nbytes
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # loop closed: the thread is gone
            self._check_alive()
            raise

    def _check_alive(self) -> None:
        if self._fatal is not None:
            raise RecorderError(f"the recorder cannot publish: {self._fatal}") from self._fatal
        if self._thread is None or not self._thread.is_alive():
            raise RecorderError("the recorder thread has stopped")

    # --- loop side (the recorder thread) -----------------------------------------------------------

    def _thread_main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: BLE001 - reported to the producer, never lost
            self._fatal = self._fatal or e
        finally:
            with contextlib.suppress(Exception):
                _cancel_all_tasks(self._loop)
                self._loop.close()
            if self.stack is not None:
                with contextlib.suppress(Exception):
                    self.stack.cleanup()
            with self._cond:
                self._cond.notify_all()

    async def _connect(self) -> None:
        settings = self.nats
        if settings is None:
            from .embedded import Stack

            env = dict(os.environ)
            # A producer may pause for long between frames (a training update in mid-episode): the
            # embedded encoder waits instead of failing the video after a minute.
            env.setdefault("SIMREEL_FRAME_IDLE_TIMEOUT_S", "3600")
            self.stack = Stack(out_dir=self.embedded_dir, log_dir=self.embedded_dir / "logs",
                               services=embedded_services(env), env=env)
            self.stack.start()
            settings = NatsSettings(url=self.stack.url)
            self.log.info("embedded_stack_started", url=self.stack.url, out_dir=str(self.embedded_dir))
        # The bus reconnects forever once connected (a NATS restart must only pause recording), but a
        # bus that was never reachable must fail the producer instead of blocking it on a full queue.
        try:
            self.bus = await asyncio.wait_for(Bus.connect(settings, name=self.name), self.connect_timeout)
        except asyncio.TimeoutError:
            raise ConnectionError(f"cannot reach NATS at {settings.url.split('@')[-1]} within "
                                  f"{self.connect_timeout:.0f}s (SIMREEL_NATS_URL)") from None

    async def _main(self) -> None:
        try:
            await self._connect()
        except BaseException as e:  # noqa: BLE001
            self._fatal = e
            self.log.error("recorder_connect_failed", error=f"{type(e).__name__}: {e}")
            return
        try:
            while True:
                self._wake.clear()
                item = self._take()
                if item is None:
                    await self._wake.wait()
                    continue
                if item[0] == "stop":
                    await self._drain(item[1])
                    return
                await self._handle(item)
        except BaseException as e:  # noqa: BLE001
            self._fatal = e
            self.log.error("recorder_failed", error=f"{type(e).__name__}: {e}")
        finally:
            for t in self._waiters:
                t.cancel()
            if self.bus is not None:
                await self.bus.close()

    def _take(self) -> tuple | None:
        with self._cond:
            if not self._items:
                return None
            item, nbytes = self._items.popleft()
            self._bytes -= nbytes
            self._cond.notify_all()
            return item

    async def _handle(self, item: tuple) -> None:
        kind = item[0]
        if kind == "begin":
            _, run, kwargs = item
            self._run = run
            self._rec = RunRecorder(self.bus, run_id=run.run_id, outputs=self.outputs, session=self.session,
                                    inflight_bytes=self.inflight_bytes, logger=self.log, **kwargs)
            try:
                await self._rec.start()
            except Exception as e:  # noqa: BLE001 - one bad run must not stop the next ones
                await self._fail(e)
        elif kind == "frame":
            if self._rec is None:
                return  # the run already failed; its frames are dropped
            try:
                await self._rec.add_frame(item[1], item[2])
            except Exception as e:  # noqa: BLE001
                await self._fail(e)
        elif kind == "end":
            _, episode, report = item
            if self._rec is None:
                self._run = None
                return
            try:
                await self._rec.end_episode(**episode)
                await self._rec.complete(report)
            except Exception as e:  # noqa: BLE001
                await self._fail(e)
                return
            run, self._rec, self._run = self._run, None, None
            run.status = "storing"
            task = asyncio.create_task(self._await_stored(run))
            self._waiters.add(task)
            task.add_done_callback(self._waiters.discard)

    async def _fail(self, error: BaseException) -> None:
        """Fail the current run (its later frames are dropped) and keep serving the next ones."""
        rec, run = self._rec, self._run
        self._rec = None
        message = f"{type(error).__name__}: {error}"
        if rec is not None:
            with contextlib.suppress(Exception):
                await rec.fail(message, code="bad_request" if isinstance(error, (ValueError, msgspec.ValidationError))
                               else "internal")
        if run is not None:
            self._finish(run, "failed", message)

    async def _await_stored(self, run: RecordedRun) -> None:
        try:
            result = await Client(self.bus).wait(run.run_id)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            self._finish(run, "failed", f"following the run failed: {type(e).__name__}: {e}")
            return
        run.artifacts = list(result.artifacts)
        run.stored_at = time.monotonic()
        self._finish(run, result.status, result.error)

    def _finish(self, run: RecordedRun, status: str, error: str | None) -> None:
        if run.on_result is not None:
            run.status, run.error = status, error
            try:
                run.on_result(run)
            except Exception as e:  # noqa: BLE001 - a callback bug must not lose the result
                self.log.warning("on_result_failed", run_id=run.run_id, error=f"{type(e).__name__}: {e}")
        with self._cond:
            run.status, run.error, run.finished = status, error, True
            self._cond.notify_all()

    async def _drain(self, deadline: float) -> None:
        if self._rec is not None:  # still recording at close: nothing will end it
            await self._fail(RecorderError("closed while still recording"))
        if self._waiters:
            _, pending = await asyncio.wait(set(self._waiters), timeout=max(0.0, deadline - time.monotonic()))
            for t in pending:
                t.cancel()
