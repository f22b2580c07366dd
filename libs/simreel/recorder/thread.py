"""RecorderThread: the synchronous façade over RunRecorder, for producers that are not asyncio code.

The producer's thread puts typed messages (Begin, Frame, End, Stop) into a byte-bounded Handoff
(simreel.transport.handoff, the same one the simulator's render thread uses); the recorder thread takes them in
order and drives one RunRecorder per run.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import msgspec
import numpy as np

from simreel.contract import events as ev
from simreel.runtime import log as logs
from simreel.transport.bus import Bus
from simreel.client import Client
from simreel.runtime import config
from simreel.runtime.config import NatsSettings
from simreel.transport.handoff import Handoff

from simreel.recorder.pool import FramePool
from simreel.recorder.results import RecordedRun
from simreel.recorder.run import DEFAULT_INFLIGHT_BYTES, RecorderError, RunRecorder


# Frames waiting for the recorder thread (it publishes them to JetStream, which holds them until the
# encoder reads them). They wait here only while NATS starts or the bus is slow: ~4 frames of 640x480.
# Its peak is part of the recorder's share of the training process's memory (goal: +20 MiB in all),
# so it is small; a step() that finds it full waits for the next frame to be published.
DEFAULT_QUEUE_BYTES = 4 * 1024 * 1024


def embedded_services(env: Mapping[str, str]) -> tuple[str, ...]:
    """Recorder runs need no simulator; retention only matters when a retention policy is set."""
    extra = ("retention",) if config.retention_configured(env) else ()
    return ("encoder", "uploader", *extra)


# --- what the producer's thread says ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Begin:
    run: RecordedRun
    recorder_kwargs: dict[str, Any]  # width, height, fps, scene, … for RunRecorder


@dataclass(frozen=True, slots=True)
class Frame:
    pixels: bytes | bytearray
    telemetry: dict[str, Any] | None
    pooled: bool = False  # a FramePool buffer: handed back once compressed


@dataclass(frozen=True, slots=True)
class End:
    episode: dict[str, Any]  # keyword arguments of RunRecorder.end_episode
    report: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Publish:
    event: ev.Event  # an informative event (announcements, control answers): published, never retried


@dataclass(frozen=True, slots=True)
class Decide:
    run: RecordedRun
    event: ev.Event  # EpisodeKept / EpisodeDiscarded of an ended run: the run is not finished without it


@dataclass(frozen=True, slots=True)
class Stop:
    deadline: float  # time.monotonic() by which stored results must be in


Message = Begin | Frame | End | Publish | Decide | Stop


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncio.run does on exit: nats-py leaves helper tasks behind after unsubscribe/drain."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


class RecorderThread:
    """A background thread that owns an event loop, the NATS connection and the RunRecorders, fed by
    any thread through a byte-bounded queue.

    Why a thread and not `asyncio.run` per video: the producer (an env's `step()`) must return at
    once, and the connection must stay serviced (pings, acks) while the producer does other work
    between recordings. Why bounded by bytes: the queue is the only place frames wait, so its limit
    is the recorder's memory footprint whatever the video's length; a slow bus blocks the producer.

    With `nats=None` it joins the process's one embedded stack (simreel.stack.process_stack: nats-server +
    encoder and uploader co-hosted in one child, + retention when a SIMREEL_RETENTION_* policy is set),
    which the first user starts with artifacts under its `embedded_dir`; close() lets go of it, and it
    stops in the background after its last user. Joining happens in this thread, so the producer
    never waits for start-up: its frames wait in the bounded hand-off until the bus is up.
    """

    def __init__(
        self,
        *,
        nats: NatsSettings | None = None,
        embedded_dir: Path | None = None,
        session: str = "default",
        outputs: ev.OutputSpec | None = None,
        max_queue_bytes: int = DEFAULT_QUEUE_BYTES,
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
        self._cond = threading.Condition()  # guards the runs' results (status, finished)
        self._handoff: Handoff[Message] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fatal: BaseException | None = None
        self._closed = False
        self._current: RecordedRun | None = None
        # loop-thread state
        self._rec: RunRecorder | None = None
        self._run: RecordedRun | None = None
        self._waiters: set[asyncio.Task] = set()
        self._subscriptions: list[tuple[str, Callable[[ev.Event], None]]] = []
        self._pool = FramePool()

    # --- producer side (any thread) ----------------------------------------------------------------

    @property
    def url(self) -> str | None:
        return self.stack.url if self.stack is not None else (self.nats.url if self.nats else None)

    @property
    def log_dir(self) -> Path | None:
        return self.stack.log_dir if self.stack is not None else None

    def start(self) -> None:
        """Connect (and join the embedded stack) now, in the background, instead of at the first
        begin(): start-up then overlaps the caller's own set-up."""
        if self._closed:
            raise RecorderError("the recorder is closed")
        self._ensure_thread()

    def connected(self, timeout: float = 60.0) -> bool:
        """Wait until the bus is connected (or the recorder failed); True when connected."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.bus is None and self._fatal is None and self._thread is not None and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
            return self.bus is not None

    def publish(self, event: ev.Event) -> None:
        """Publish an event from any thread without waiting for it (a lost NATS only logs a warning)."""
        if self._closed:
            return
        with contextlib.suppress(RecorderError):
            self._ensure_thread()
            self._put(Publish(event))

    def subscribe(self, subject: str, callback: Callable[[ev.Event], None]) -> None:
        """Call `callback(event)` in the recorder thread for every event published on `subject`
        (a plain NATS subscription: what arrives while disconnected is not replayed). Undecodable
        messages are logged and dropped. Subscribe before start() to miss nothing after connecting."""
        self._subscriptions.append((subject, callback))
        if self.bus is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._subscribe(subject, callback), self._loop)

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
        self._put(Begin(run, dict(width=width, height=height, fps=fps, **recorder_kwargs)))
        return run

    def frame(self, pixels: bytes, telemetry: dict[str, Any] | None = None) -> None:
        """Queue one rgb24 frame of the current run; blocks only while the queue is full."""
        self._require_run()
        self._queue_frame(Frame(pixels, telemetry))

    def frame_array(self, frame: np.ndarray, telemetry: dict[str, Any] | None = None,
                    planes: Sequence[np.ndarray] = ()) -> None:
        """As frame(), from an HxWx3 uint8 array: copied into a reused buffer (see recorder.pool).
        `planes`: the run's other streams of the same frame (begin(streams=…)), in its stream order."""
        self._require_run()
        self._queue_frame(Frame(self._pool.copy(frame, *planes), telemetry, pooled=True))

    def _require_run(self) -> None:
        if self._current is None:
            raise RecorderError("begin() a run before sending frames")

    def _queue_frame(self, msg: Frame) -> None:
        self._current.frames += 1
        self._put(msg, len(msg.pixels))

    def end(self, *, report: Mapping[str, Any] | None = None, **episode: Any) -> RecordedRun:
        """End the current run's episode (`episode` goes to RunRecorder.end_episode) and complete it."""
        run = self._current
        if run is None:
            raise RecorderError("no run is recording")
        self._current = None
        run.ended_at = time.monotonic()
        self._put(End(dict(episode), dict(report or {})))
        return run

    def decide(self, run: RecordedRun, event: ev.Event) -> None:
        """Publish the keep decision (EpisodeKept / EpisodeDiscarded) of an ended run, in order after
        everything queued before it; a run whose decision cannot be published fails."""
        run.awaiting_decision = False
        self._put(Decide(run, event))

    def wait(self, timeout: float | None = None) -> list[RecordedRun]:
        """Block until every ended run is stored (or failed), or the timeout passes. Runs awaiting a
        keep decision are not waited for."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while any(not r.finished for r in self.runs if r.ended_at is not None and not r.awaiting_decision):
                if self._fatal is not None or self._thread is None or not self._thread.is_alive():
                    break
                dead = self.stack.dead() if self.stack is not None else None
                if dead is not None:
                    self._fatal = RecorderError(dead)
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
                self._put(Stop(deadline))
            self.wait(timeout)  # returns early, with the reason in _fatal, if a stack process died
        if self._thread.is_alive() and self._fatal is not None:
            # Nothing more will be stored: stop following the runs instead of waiting out the timeout.
            with contextlib.suppress(RuntimeError):
                self._handoff.put(Stop(time.monotonic()))
                self._loop.call_soon_threadsafe(self._abandon)
        self._thread.join(max(0.0, deadline - time.monotonic()) + 60)
        if self._thread.is_alive():  # daemon: it dies with the process; say so instead of waiting on
            self.log.warning("recorder_not_stopped", thread=self._thread.name, timeout_s=timeout + 60)
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
        self._handoff = Handoff(self._loop, max_bytes=self.max_queue_bytes)
        self._thread = threading.Thread(target=self._thread_main, name=self.name, daemon=True)
        self._thread.start()

    def _put(self, message: Message, nbytes: int = 0) -> None:
        """Blocks only while the hand-off is full; raises if the recorder thread cannot take it."""
        self._handoff.put(message, nbytes, check=self._check_alive)

    def _check_alive(self) -> None:
        if self._fatal is not None:
            raise RecorderError(f"the recorder cannot publish: {self._fatal}") from self._fatal
        if self._thread is None or not self._thread.is_alive():
            raise RecorderError("the recorder thread has stopped")
        dead = self.stack.dead() if self.stack is not None else None  # rate-limited: cheap per frame
        if dead is not None:
            self._fatal = RecorderError(dead)
            raise RecorderError(f"the recorder cannot publish: {dead}")

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
                self.stack.release()  # the process's stack stops in the background after its last user
            with self._cond:
                self._cond.notify_all()

    async def _connect(self) -> None:
        settings = self.nats
        if settings is None:
            from simreel.stack import process_stack

            env = dict(os.environ)
            # A producer may pause for long between frames (a training update in mid-episode): the
            # embedded encoder waits instead of failing the video after a minute.
            env.setdefault("SIMREEL_FRAME_IDLE_TIMEOUT_S", "3600")
            # Short clips (a CartPole episode) cost the encoder more in per-video round trips than in
            # encoding: several at once keep the stack up with a fast loop.
            env.setdefault("SIMREEL_CONCURRENCY", "4")
            # The encoder at the loop's own priority, not `simreel run`'s nice 10: short clips are then
            # encoded as they come and close() does not wait for a queue (benchmarks/RESULTS.md).
            env.setdefault("SIMREEL_ENCODER_NICE", "0")
            # Blocks this thread only (frames wait in the bounded hand-off meanwhile), never the producer.
            self.stack = process_stack.acquire(self.embedded_dir, services=embedded_services(env), env=env)
            settings = NatsSettings(url=self.stack.url)
            self.log.info("embedded_stack_joined", url=self.stack.url, out_dir=str(self.stack.out_dir))
        # The bus reconnects forever once connected (a NATS restart must only pause recording), but a
        # bus that was never reachable must fail the producer instead of blocking it on a full queue.
        try:
            self.bus = await asyncio.wait_for(Bus.connect(settings, name=self.name), self.connect_timeout)
        except asyncio.TimeoutError:
            raise ConnectionError(f"cannot reach NATS at {settings.url.split('@')[-1]} within "
                                  f"{self.connect_timeout:.0f}s (SIMREEL_NATS_URL)") from None
        for subject, callback in self._subscriptions:
            await self._subscribe(subject, callback)
        with self._cond:
            self._cond.notify_all()  # connected() waiters

    async def _subscribe(self, subject: str, callback: Callable[[ev.Event], None]) -> None:
        async def _on(msg_subject: str, data: bytes) -> None:
            try:
                event = ev.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                self.log.warning("bad_message", subject=msg_subject, error=str(e))
                return
            try:
                callback(event)
            except Exception as e:  # noqa: BLE001 - a callback bug must not stop the recorder
                self.log.warning("subscriber_failed", subject=msg_subject, error=f"{type(e).__name__}: {e}")

        await self.bus.listen(subject, _on)

    def _abandon(self) -> None:
        for t in self._waiters:
            t.cancel()

    async def _main(self) -> None:
        try:
            await self._connect()
        except BaseException as e:  # noqa: BLE001
            self._fatal = e
            self.log.error("recorder_connect_failed", error=f"{type(e).__name__}: {e}")
            return
        try:
            while True:
                match await self._handoff.get():
                    case Stop(deadline):
                        await self._drain(deadline)
                        return
                    case message:
                        await self._handle(message)
        except BaseException as e:  # noqa: BLE001
            self._fatal = e
            self.log.error("recorder_failed", error=f"{type(e).__name__}: {e}")
        finally:
            for t in self._waiters:
                t.cancel()
            if self.bus is not None:
                await self.bus.close()

    async def _handle(self, message: Message) -> None:
        match message:
            case Publish(event):
                try:
                    await self.bus.publish(event)
                except Exception as e:  # noqa: BLE001 - informative events must never fail a recording
                    self.log.warning("event_not_published", type=type(event).__name__,
                                     error=f"{type(e).__name__}: {e}")
            case Decide(run, event):
                try:
                    await self.bus.publish(event)
                except Exception as e:  # noqa: BLE001 - without its decision the run never finishes
                    self._finish(run, "failed", f"the keep decision was not published: {type(e).__name__}: {e}")
            case Begin(run, kwargs):
                self._run = run
                outputs = kwargs.pop("outputs", None) or self.outputs  # a wrapper's own (its keep rule)
                self._rec = RunRecorder(self.bus, run_id=run.run_id, outputs=outputs, session=self.session,
                                        inflight_bytes=self.inflight_bytes, logger=self.log, **kwargs)
                try:
                    await self._rec.start()
                except Exception as e:  # noqa: BLE001 - one bad run must not stop the next ones
                    await self._fail(e)
            case Frame(pixels, telemetry, pooled):
                if self._rec is None:
                    return  # the run already failed; its frames are dropped
                try:
                    await self._rec.add_frame(pixels, telemetry)
                except Exception as e:  # noqa: BLE001
                    await self._fail(e)
                    return
                if pooled and self._rec.frame_compression != "none":
                    self._pool.give(pixels)  # compressed: nothing holds the raw frame (raw batches do)
            case End(episode, report):
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
