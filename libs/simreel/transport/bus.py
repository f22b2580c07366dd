"""The one place that talks to NATS: connect, streams, publish, work-claiming consume loops, replay.

Services hand in plain handlers (`event -> events`) and get JetStream semantics around them:
ack only after the resulting events are published, `in_progress()` while a handler runs long,
bounded redelivery, and a dead-letter event instead of a crash or an endless loop.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import ssl
import time
import weakref
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Protocol

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api

from simreel.contract import events as ev
from simreel.runtime import lean_imports
from simreel.runtime import log as logs
from simreel.runtime.cancel import raise_if_cancel_lost
from simreel.contract import subjects
from simreel.runtime.config import NatsSettings

log = logs.get("simreel.bus")


# FRAMES holds the frames of runs in flight until their videos are staged. 8 GiB is what it asks for
# when the server can hold it; below 64 MiB (a few hundred compressed 640x480 frames) it is no use.
FRAMES_DEFAULT_BYTES = 8 * 1024**3
FRAMES_MIN_BYTES = 64 * 1024**2
# JetStream's answers when a stream's max_bytes is more than its storage can reserve: a single server
# (10047, insufficient storage resources) or a cluster with no peer that has room (10023).
_INSUFFICIENT_STORAGE = {10047, 10023}


class FramesStorageError(RuntimeError):
    """The NATS server cannot hold a useful FRAMES stream; the message says what to change."""


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.0f} MiB"


class PermanentError(Exception):
    """A handler failure that no retry can fix (bad input): dead-letter at once."""


@dataclass
class Delivery:
    """What a handler may want to know about the message it is handling."""

    subject: str
    attempt: int  # JetStream delivery count, starting at 1
    stream_seq: int
    msg: Msg | None = None

    async def in_progress(self) -> None:
        if self.msg is not None:
            with contextlib.suppress(Exception):
                await self.msg.in_progress()


# A handler returns the events that follow from the one it handles, or yields them as they happen
# (a long run announces each video as soon as it exists). It never publishes them itself: the bus
# publishes what comes out, in order, then acks.
Handler = Callable[[Any, Delivery], Awaitable[Iterable[ev.Event]] | AsyncIterator[ev.Event]]


async def handler_events(handler: Handler, event: Any, delivery: "Delivery") -> AsyncIterator[ev.Event]:
    """What a handler produces, as one stream whether it returns a list or is an async generator.
    The bus and the in-memory test harness both read handlers through this."""
    produced = handler(event, delivery)
    if inspect.isasyncgen(produced):
        async with contextlib.aclosing(produced):
            async for e in produced:
                yield e
    else:
        for e in (await produced) or ():
            yield e


# What a service says to the sender of a message that does not decode (besides the dead letter).
Refusal = Callable[[bytes, Exception, "Delivery"], list[ev.Event]]


@dataclass(frozen=True, slots=True)
class Logged:
    """The last event stored on a subject: its stream sequence, and the event (None if it does not decode)."""

    seq: int
    event: ev.Event | None


class HandlerBus(Protocol):
    """What handlers and frame producers use of the bus. `Bus` implements it over NATS, and
    tests/support's MemoryBus in lists, so a handler tested on one runs the same on the other
    (tests/unit/test_bus_protocol.py compares the signatures)."""

    @property
    def max_payload(self) -> int: ...

    @property
    def reconnects(self) -> int: ...

    async def publish(self, event: ev.Event) -> Any: ...

    async def publish_all(self, events: Iterable[ev.Event]) -> None: ...

    async def last_event(self, subject: str, *, deadline_s: float = 30.0) -> Logged | None: ...

    def replay(self, filter_subject: str | list[str] = subjects.ALL_EVENTS) -> AsyncIterator[ev.Event]: ...

    async def publish_frame_data(self, subject: str, data: bytes, msg_id: str) -> asyncio.Future: ...

    async def subscribe_frames(self, run_id: str, attempt: int, *, episode: int | None = None,
                               start_seq: int | None = None) -> Any: ...

    async def purge_frames(self, run_id: str, attempt: int | None = None) -> None: ...

    async def frame_subjects(self) -> list[str]: ...

# JetStream is there but cannot answer yet (restart, leader election): wait, do not give up. (No
# responders at all means a server without JetStream: that is an error to report, not to wait out.)
JS_UNAVAILABLE = (nats.errors.TimeoutError, nats.errors.ConnectionReconnectingError,
                   nats.js.errors.ServiceUnavailableError)


def _tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    if not (settings.tls_ca or settings.tls_cert):
        return None
    ctx = ssl.create_default_context(cafile=settings.tls_ca)
    if settings.tls_cert:
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    return ctx


async def connect(settings: NatsSettings, *, name: str = "simreel", connect_timeout: float = 5.0,
                  first_connect_s: float | None = None,
                  on_reconnected: Callable[[], None] | None = None) -> nats.NATS:
    """Connect with reconnects forever once connected: a NATS restart must pause the services, not
    kill them. The first connection has a deadline (SIMREEL_NATS_CONNECT_TIMEOUT_S, default 30 s), so
    a wrong URL is a clear error instead of a hang."""
    servers = [u.strip() for u in settings.url.split(",")]
    if any(u.startswith(("ws://", "wss://")) for u in servers):
        lean_imports.websockets()
    opts: dict[str, Any] = dict(
        servers=servers,
        name=name,
        connect_timeout=connect_timeout,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
        drain_timeout=5,
    )
    if settings.creds:
        opts["user_credentials"] = settings.creds
    if settings.user:
        opts["user"] = settings.user
        opts["password"] = settings.password or ""
    if settings.token:
        opts["token"] = settings.token
    tls = _tls_context(settings)
    if tls is not None:
        opts["tls"] = tls

    nc = nats.NATS()

    async def _err(e: Exception) -> None:
        log.warning("nats_error", error=str(e))

    async def _disc() -> None:
        if not (nc.is_closed or nc.is_draining):  # our own close is not news
            log.warning("nats_disconnected")

    async def _recon() -> None:
        log.info("nats_reconnected")
        if on_reconnected is not None:
            on_reconnected()

    opts.update(error_cb=_err, disconnected_cb=_disc, reconnected_cb=_recon)
    if first_connect_s is None:
        first_connect_s = settings.connect_timeout_s
    try:
        await asyncio.wait_for(nc.connect(**opts), first_connect_s)
    except (asyncio.TimeoutError, OSError, nats.errors.NoServersError) as e:
        with contextlib.suppress(Exception):
            await nc.close()
        where = ", ".join(s.split("@")[-1] for s in opts["servers"])
        raise ConnectionError(f"cannot reach NATS at {where} within {first_connect_s:.0f}s "
                              f"({type(e).__name__}); check SIMREEL_NATS_URL / --nats") from None
    return nc


class Bus:
    def __init__(self, nc: nats.NATS, *, replicas: int = 1, frames_max_bytes: int = 0) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=10)
        self.replicas = replicas
        self.frames_max_bytes = frames_max_bytes  # 0: sized from what the server can hold
        # How long in-flight work may run on after stop before it is cancelled and nak'ed back
        # (service.serve sets it from SIMREEL_SHUTDOWN_GRACE_S; keep it below the orchestrator's kill timeout).
        self.shutdown_grace_s = 20.0
        self._handing_back: weakref.WeakSet[asyncio.Task] = weakref.WeakSet()
        self._reconnect_waiters: set[asyncio.Future] = set()
        # JetStream requests retried because JetStream did not answer, by operation: the same fact as
        # the *_retry log lines, for health checks and tests that must not depend on log capture.
        self.retries: collections.Counter[str] = collections.Counter()

    @classmethod
    async def connect(cls, settings: NatsSettings, *, name: str = "simreel", replicas: int = 1) -> "Bus":
        listeners: list[Callable[[], None]] = []
        nc = await connect(settings, name=name, on_reconnected=lambda: [f() for f in listeners])
        bus = cls(nc, replicas=replicas, frames_max_bytes=settings.frames_max_bytes)
        listeners.append(bus.notify_reconnected)
        try:
            await bus.ensure_streams()
        except BaseException:
            await nc.close()
            raise
        return bus

    @property
    def reconnects(self) -> int:
        """How many times the client has reconnected since it first connected."""
        return int(self.nc.stats.get("reconnects", 0))

    def notify_reconnected(self) -> None:
        for waiter in self._reconnect_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._reconnect_waiters.clear()

    def next_reconnect(self) -> asyncio.Future:
        """Resolves when the connection next comes back after a drop (only for buses made by
        `Bus.connect`, which wires the client's reconnect callback to `notify_reconnected`)."""
        waiter = asyncio.get_running_loop().create_future()
        self._reconnect_waiters.add(waiter)
        waiter.add_done_callback(self._reconnect_waiters.discard)  # cancelled waiters do not pile up
        return waiter

    @property
    def max_payload(self) -> int:
        return self.nc.max_payload

    async def ensure_streams(self) -> None:
        """Create EVENTS and FRAMES if missing; every service and client calls this, so order of start
        never matters. An existing stream is left as configured (operators may have tuned it).

        Retried while JetStream does not answer: in a cluster that just lost a node, the stream info
        request waits for a leader election (it timed out after 10 s on a busy machine), and a
        service that died of that at start stayed dead while runs waited on it forever."""
        for name in (subjects.EVENTS_STREAM, subjects.FRAMES_STREAM):
            delay = 0.25
            while True:
                try:
                    if name == subjects.EVENTS_STREAM:
                        await self._ensure_stream(subjects.events_stream(replicas=self.replicas))
                    else:
                        await self._ensure_frames()
                    break
                except JS_UNAVAILABLE as e:
                    self.retries["ensure_streams"] += 1
                    log.warning("ensure_streams_retry", stream=name, error=type(e).__name__)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)

    async def _ensure_stream(self, cfg: api.StreamConfig) -> bool:
        """Create the stream unless it exists; True if this call created it."""
        try:
            await self.js.stream_info(cfg.name)
            return False
        except nats.js.errors.NotFoundError:
            try:
                await self.js.add_stream(cfg)
                return True
            except nats.js.errors.BadRequestError as e:  # created concurrently by another process
                if "already in use" not in str(e):
                    raise
                return False

    async def _ensure_frames(self) -> None:
        """FRAMES, sized from what the server can hold and what the operator set.

        JetStream reserves a stream's max_bytes up front and refuses a stream larger than its storage
        (err 10047): a fixed 8 GiB kept every machine with less than ~11 GB free disk from starting.
        An operator's SIMREEL_FRAMES_MAX_BYTES is taken as it is or refused with a clear error.
        Otherwise the size halves from 8 GiB until the server accepts it, and when the server's
        storage was the limit the stream takes half of what it accepted, leaving the rest to the event
        log and staged files on the same disk."""
        wanted = self.frames_max_bytes or FRAMES_DEFAULT_BYTES
        size = wanted
        while True:
            try:
                created = await self._ensure_stream(subjects.frames_stream(max_bytes=size, replicas=self.replicas))
                break
            except nats.js.errors.APIError as e:
                if e.err_code not in _INSUFFICIENT_STORAGE:
                    raise
                if self.frames_max_bytes:
                    raise FramesStorageError(
                        f"the NATS server cannot hold a FRAMES stream of {_mib(size)} (SIMREEL_FRAMES_MAX_BYTES; "
                        "JetStream: insufficient storage resources): lower it, or give the server more "
                        "disk (its JetStream store directory, max_file_store)") from None
                size //= 2
                if size < FRAMES_MIN_BYTES:
                    raise FramesStorageError(
                        f"the NATS server cannot hold even {_mib(FRAMES_MIN_BYTES)} for the FRAMES stream "
                        "(JetStream: insufficient storage resources): free disk space where its JetStream "
                        "store directory is (the embedded stack keeps it under its data directory, "
                        "TMPDIR by default), or raise the server's max_file_store") from None
        if not created:
            return
        limited = size < wanted
        if limited and size // 2 >= FRAMES_MIN_BYTES:
            size //= 2
            await self.js.update_stream(subjects.frames_stream(max_bytes=size, replicas=self.replicas))
        log.info("frames_stream_created", max_bytes=size, wanted=wanted,
                 sized_by="server storage" if limited else
                 ("SIMREEL_FRAMES_MAX_BYTES" if self.frames_max_bytes else "default"))

    # --- publishing --------------------------------------------------------------------------------

    async def publish(self, event: ev.Event, *, retries: int = 20) -> api.PubAck:
        """Publish one event to the EVENTS stream with Nats-Msg-Id = event_id, retrying while NATS is
        briefly away (reconnecting), so an ack is never sent for a fact that was not stored."""
        data = ev.encode(event)
        subject = subjects.subject_for(event)
        delay = 0.1
        for attempt in range(retries):
            try:
                return await self.js.publish(subject, data, headers={"Nats-Msg-Id": event.event_id})
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError,
                    nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
                    nats.js.errors.ServiceUnavailableError) as e:
                if attempt == retries - 1:
                    raise
                log.warning("publish_retry", subject=subject, error=type(e).__name__, attempt=attempt + 1)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    async def publish_all(self, events: Iterable[ev.Event]) -> None:
        for e in events:
            await self.publish(e)

    async def publish_frame_data(self, subject: str, data: bytes, msg_id: str | None) -> asyncio.Future:
        """Publish one encoded FrameBatch without waiting for its ack; the future resolves to it.
        Without `msg_id` JetStream does not deduplicate it."""
        return await self.js.publish_async(subject, data, headers={"Nats-Msg-Id": msg_id} if msg_id else None)

    async def listen(self, subject: str, callback: Callable[[str, bytes], Awaitable[None]]) -> Any:
        """Every message published on `subject` from now on, as (subject, data), without replay or
        acks (a live recorder's controls); the subscription is returned for `unsubscribe()`."""
        async def _on(msg: Msg) -> None:
            await callback(msg.subject, msg.data)

        return await self.nc.subscribe(subject, cb=_on)

    async def waiting_pullers(self, consumer: str, stream: str = subjects.EVENTS_STREAM) -> int:
        """How many fetches are waiting on a durable consumer (0 if it does not exist yet)."""
        try:
            info = await self.js.consumer_info(stream, consumer)
        except (nats.errors.Error, asyncio.TimeoutError):
            return 0
        return info.num_waiting or 0

    # --- looking things up -------------------------------------------------------------------------

    async def last_event(self, subject: str, *, deadline_s: float = 30.0) -> Logged | None:
        """The last event stored on an EVENTS subject (e.g. the run's last SimStarted), or None.

        Retried while JetStream cannot answer (a restart, a stream leader election after a node loss),
        up to `deadline_s`; then the error escapes, so a handler is retried instead of guessing."""
        delay, give_up = 0.25, time.monotonic() + deadline_s
        while True:
            try:
                raw = await self.js.get_last_msg(subjects.EVENTS_STREAM, subject)
                break
            except nats.js.errors.NotFoundError:
                return None
            except (*JS_UNAVAILABLE, nats.js.errors.NoStreamResponseError) as e:
                if time.monotonic() + delay > give_up:
                    raise
                log.warning("last_event_retry", subject=subject, error=type(e).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        try:
            return Logged(raw.seq, ev.decode(raw.data))
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Logged(raw.seq, None)

    # --- frames ------------------------------------------------------------------------------------

    async def subscribe_frames(self, run_id: str, attempt: int, *, episode: int | None = None,
                               start_seq: int | None = None):
        """An ephemeral pull consumer over one attempt's frames (or one episode's), in stream order
        (the encoder's read), from the first frame or from stream sequence `start_seq`. It does not
        ack: frames stay in FRAMES until the run is encoded, so a reader can start over."""
        subject = subjects.run_frames(run_id, attempt) if episode is None else subjects.frames(run_id, attempt, episode)
        return await self.js.pull_subscribe(
            subject, stream=subjects.FRAMES_STREAM,
            config=api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.ALL if start_seq is None else api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start_seq, ack_policy=api.AckPolicy.NONE, inactive_threshold=300.0,
                mem_storage=True))

    async def purge_frames(self, run_id: str, attempt: int | None = None) -> None:
        """Drop frames nobody will read again (their video is staged, or their attempt is dead)."""
        await self.js.purge_stream(subjects.FRAMES_STREAM, subject=subjects.run_frames(run_id, attempt))

    async def frame_subjects(self) -> list[str]:
        """Every subject that has frames in FRAMES now."""
        info = await self.js.stream_info(subjects.FRAMES_STREAM, subjects_filter=subjects.ALL_FRAMES)
        return list(info.state.subjects or {})

    # --- work claiming -----------------------------------------------------------------------------

    async def consume(
        self,
        service: str,
        handlers: Mapping[type, Handler],
        *,
        stop: asyncio.Event,
        concurrency: int = 1,
        ack_wait_s: float = 30.0,
        max_deliver: int = 5,
        grace_s: float | None = None,
        on_undecodable: Refusal | None = None,
    ) -> None:
        """Claim work from the service's shared durable pull consumer until `stop` is set.

        Each message: decode → handler → publish the events it returns → ack. A message that does
        not decode, has no handler, or failed `max_deliver` times is dead-lettered and acked away;
        for one that does not decode, `on_undecodable` may say more to whoever sent it (events
        published before the dead letter).
        On stop, in-flight work gets `grace_s` to finish, then is cancelled and nak'ed back so
        another replica takes it over.
        """
        grace_s = self.shutdown_grace_s if grace_s is None else grace_s
        filters = subjects.WORK_CONSUMERS[service]
        config = api.ConsumerConfig(
            durable_name=service,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=ack_wait_s,
            # One more than ours: the last delivery is the one that writes the dead letter.
            max_deliver=max_deliver + 1,
            max_ack_pending=max(concurrency * 4, 16),
        )
        if len(filters) == 1:
            config.filter_subject = filters[0]
        else:
            config.filter_subjects = list(filters)
        sub = None
        while sub is None and not stop.is_set():
            try:
                # Create or update: a new release may claim more subjects with the same durable name.
                await self.js.add_consumer(subjects.EVENTS_STREAM, config=config)
                sub = await self.js.pull_subscribe_bind(durable=service, stream=subjects.EVENTS_STREAM)
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError) as e:
                log.warning("consumer_create_retry", service=service, error=type(e).__name__)
                await asyncio.sleep(0.5)
        if sub is None:
            return
        slots = asyncio.Semaphore(concurrency)
        inflight: set[asyncio.Task] = set()
        messages: dict[asyncio.Task, Msg] = {}
        log.info("consuming", service=service, subjects=filters, concurrency=concurrency)
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                acquire = asyncio.ensure_future(slots.acquire())
                done, _ = await asyncio.wait({acquire, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if acquire not in done:
                    acquire.cancel()
                    break
                try:
                    msgs = await sub.fetch(1, timeout=1.0)
                except nats.errors.TimeoutError:
                    slots.release()
                    continue
                except Exception as e:  # reconnecting, server restart: back off and retry
                    slots.release()
                    log.warning("fetch_failed", service=service, error=f"{type(e).__name__}: {e}")
                    await asyncio.sleep(0.5)
                    continue
                if not msgs:
                    slots.release()
                    continue
                task = asyncio.create_task(self._handle(service, msgs[0], handlers, ack_wait_s, max_deliver,
                                                        on_undecodable))
                inflight.add(task)
                messages[task] = msgs[0]

                def _done(t: asyncio.Task) -> None:
                    inflight.discard(t)
                    messages.pop(t, None)
                    slots.release()

                task.add_done_callback(_done)
        finally:
            stop_wait.cancel()
            if inflight:
                log.info("draining", service=service, inflight=len(inflight), grace_s=grace_s)
                _, pending = await asyncio.wait(set(inflight), timeout=grace_s)
                await self._hand_back(service, pending, messages)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _hand_back(self, service: str, pending: set[asyncio.Task], messages: Mapping[asyncio.Task, Msg]) -> None:
        """Cancel work still running after the grace period; `_handle` naks its message so another
        replica takes it at once. A cancellation can be lost on its way (Python 3.11's asyncio.wait_for,
        used inside nats-py's fetch, swallows one that lands as its inner wait completes: the handler
        then just runs on), so it is repeated for tasks that have not started handing back, and
        whatever still runs after 5 s has its message nak'ed from here."""
        deadline = time.monotonic() + 5.0
        while pending and time.monotonic() < deadline:
            for t in pending:
                if t not in self._handing_back:
                    t.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        for t in pending:
            msg = messages.get(t)
            if msg is not None:
                with contextlib.suppress(Exception):
                    await msg.nak()
                log.warning("handed_back_unfinished", service=service, subject=msg.subject)

    async def _handle(self, service: str, msg: Msg, handlers: Mapping[type, Handler], ack_wait_s: float,
                      max_deliver: int, on_undecodable: "Refusal | None" = None) -> None:
        meta = msg.metadata
        delivery = Delivery(subject=msg.subject, attempt=meta.num_delivered, stream_seq=meta.sequence.stream, msg=msg)
        try:
            event = ev.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            if on_undecodable is not None:
                await self.publish_all(on_undecodable(msg.data, e, delivery))
            await self._dead_letter(service, msg, f"undecodable message: {e}", delivery)
            return
        handler = handlers.get(type(event))
        if handler is None:
            await self._dead_letter(service, msg, f"no handler for {type(event).__name__} in {service}", delivery)
            return
        if delivery.attempt > max_deliver:
            await self._dead_letter(service, msg, f"gave up after {max_deliver} deliveries", delivery, event)
            return
        bound = logs.get(service).bind(run_id=getattr(event, "run_id", None), event=type(event).__name__,
                                       delivery=delivery.attempt)
        beat = asyncio.create_task(self._heartbeat(msg, ack_wait_s))
        try:
            async for produced in handler_events(handler, event, delivery):
                await self.publish(produced)
            beat.cancel()
            await msg.ack()
        except asyncio.CancelledError:
            self._handing_back.add(asyncio.current_task())
            beat.cancel()
            # Shutting down: hand the work back at once instead of waiting for ack_wait.
            with contextlib.suppress(Exception):
                await msg.nak()
            bound.info("handed_back")
            raise
        except PermanentError as e:
            beat.cancel()
            await self._dead_letter(service, msg, str(e), delivery, event)
        except Exception as e:  # noqa: BLE001 - any failure is retried, then dead-lettered
            beat.cancel()
            bound.exception("handler_failed", error=f"{type(e).__name__}: {e}")
            if delivery.attempt >= max_deliver:
                await self._dead_letter(service, msg, f"{type(e).__name__}: {e} (after {delivery.attempt} deliveries)",
                                        delivery, event)
            else:
                with contextlib.suppress(Exception):
                    await msg.nak(delay=min(2.0 ** delivery.attempt, 30.0))

    async def _heartbeat(self, msg: Msg, ack_wait_s: float) -> None:
        while True:
            await asyncio.sleep(max(ack_wait_s / 3, 0.5))
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _dead_letter(self, service: str, msg: Msg, reason: str, delivery: Delivery,
                           event: ev.Event | None = None) -> None:
        dl = ev.DeadLettered.of(f"{service}-{delivery.stream_seq}", run_id=getattr(event, "run_id", None),
                                service=service, subject=msg.subject, reason=reason, deliveries=delivery.attempt,
                                payload=msg.data)
        log.warning("dead_lettered", service=service, subject=msg.subject, reason=reason[:300], run_id=dl.run_id)
        try:
            await self.publish(dl)
        finally:
            with contextlib.suppress(Exception):
                await msg.term()

    # --- reading the log ---------------------------------------------------------------------------

    async def replay(self, filter_subject: str | list[str] = subjects.ALL_EVENTS, *, batch: int = 256,
                     include_invalid: bool = False) -> AsyncIterator[ev.Event]:
        """Every event stored so far on the subjects, oldest first, then stop. Projections (runs,
        artifacts, retention index) are rebuilt from this."""
        filters = [filter_subject] if isinstance(filter_subject, str) else list(filter_subject)
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=30.0,
            mem_storage=True,
        )
        if len(filters) > 1:
            config.filter_subjects = filters
        sub = await self.js.pull_subscribe(filters[0], stream=subjects.EVENTS_STREAM, config=config)
        try:
            info = await sub.consumer_info()
            remaining = info.num_pending
            while remaining > 0:
                try:
                    msgs = await sub.fetch(min(batch, remaining), timeout=5.0)
                except nats.errors.TimeoutError:
                    break
                for m in msgs:
                    remaining = m.metadata.num_pending
                    try:
                        yield ev.decode(m.data)
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        if include_invalid:
                            raise
                    if remaining == 0:
                        break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def watch_frames(self, run_id: str) -> AsyncIterator[ev.FrameBatchView]:
        """A run's frames as they are published (starting with the latest of each episode), for
        onlookers such as a live preview. An ephemeral ordered consumer of its own: the encoders'
        durable consumer, and the simulator's publishing, never notice it."""
        sub = await self.js.subscribe(subjects.run_frames(run_id), stream=subjects.FRAMES_STREAM,
                                      ordered_consumer=True, deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT)
        try:
            while True:
                m = await _next_msg(sub)
                try:
                    yield ev.decode_frames_view(m.data)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def follow(self, filter_subject: str, *, from_start: bool = True,
                     caught_up: asyncio.Event | None = None) -> AsyncIterator[ev.Event]:
        """Past and future events on a subject, in order, forever (the caller breaks out).

        Creating the consumer is retried while JetStream is briefly unavailable (a restart, a stream
        leader election in a cluster): a caller's own deadline bounds the wait, instead of a NATS API
        timeout escaping as if it were that deadline (nats' TimeoutError is an asyncio.TimeoutError).
        Once subscribed, the ordered consumer recreates itself after missed heartbeats.
        `caught_up` is set once every event stored before the call has been yielded.
        """
        while True:
            try:
                sub = await self.js.subscribe(
                    filter_subject,
                    stream=subjects.EVENTS_STREAM,
                    ordered_consumer=True,
                    deliver_policy=api.DeliverPolicy.ALL if from_start else api.DeliverPolicy.NEW,
                )
                break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError,
                    nats.errors.ConnectionReconnectingError) as e:
                self.retries["follow"] += 1
                log.warning("follow_retry", subject=filter_subject, error=type(e).__name__)
                await asyncio.sleep(0.5)
        if caught_up is not None and not from_start:
            caught_up.set()
        try:
            if caught_up is not None and not caught_up.is_set():
                with contextlib.suppress(Exception):
                    info = await sub.consumer_info()
                    if info.num_pending == 0 and not info.delivered.consumer_seq:  # nothing stored yet
                        caught_up.set()
            while True:
                m = await _next_msg(sub)
                last = caught_up is not None and not caught_up.is_set() and m.metadata.num_pending == 0
                try:
                    event = ev.decode(m.data)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    event = None
                if event is not None:
                    yield event
                if last:
                    caught_up.set()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.drain()


async def _next_msg(sub) -> Msg:
    """The subscription's next message, however long that takes; CancelledError if the wait's
    cancellation was lost on the way (see simreel.runtime.cancel)."""
    while True:
        try:
            m = await sub.next_msg(timeout=3600)
        except nats.errors.TimeoutError:
            continue
        raise_if_cancel_lost()
        return m


class FramePublisher:
    """publish_async with a cap on bytes in flight: fast, ordered, and memory-bounded.

    The first failed ack fails the whole publisher: frames must be stored in order, so once one is
    lost the attempt is over (a new attempt republishes them all, on its own subjects). It fails at
    once, not when that ack's turn comes: across a JetStream leader change the publishes in flight
    are refused within milliseconds, but one whose reply was lost with the old leader would hold the
    attempt for the full 30 s ack timeout while its frames after the gap keep being stored.

    For the same reason a publish still unacknowledged when the connection dropped fails the
    attempt as soon as the client is back: its reply (or the publish itself) went down with the old
    socket, and waiting 30 s for an ack that cannot come let encoders give up on the run first.
    """

    def __init__(self, bus: Bus, limit_bytes: int) -> None:
        self.bus = bus
        self.limit = limit_bytes
        # (ack future, payload bytes, client reconnect count when it was sent)
        self.inflight: collections.deque[tuple[asyncio.Future, int, int]] = collections.deque()
        self.bytes = 0
        self.sent = 0
        self.error: BaseException | None = None
        self._failed = asyncio.Event()

    async def publish(self, batch: ev.FrameBatch) -> None:
        self._raise_if_failed()
        data = ev.encode_frames(batch)
        msg_id = f"{batch.run_id}.{batch.attempt}.{batch.episode}.{batch.seq}"
        sent_at = self.bus.reconnects
        fut = await self.bus.publish_frame_data(subjects.frames(batch.run_id, batch.attempt, batch.episode), data,
                                                msg_id)
        fut.add_done_callback(self._settled)
        self.inflight.append((fut, len(data), sent_at))
        self.bytes += len(data)
        self.sent += len(data)
        while self.bytes > self.limit:
            await self._pop()

    def _settled(self, fut: asyncio.Future) -> None:
        # Retrieving the error also keeps asyncio from printing "Future exception was never retrieved"
        # for each ack still in flight when the attempt is abandoned.
        error = None if fut.cancelled() else fut.exception()
        if error is not None and self.error is None:
            self.error = error
            self._failed.set()

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def _check_connection(self, fut: asyncio.Future, sent_at: int) -> None:
        if not fut.done() and self.bus.reconnects > sent_at:
            raise ConnectionResetError("the NATS connection dropped while frames were unacknowledged; "
                                       "this attempt ends and the next one republishes its frames")

    async def _pop(self) -> None:
        fut, size, sent_at = self.inflight.popleft()
        self.bytes -= size
        self._check_connection(fut, sent_at)
        if not fut.done():
            failed = asyncio.ensure_future(self._failed.wait())
            reconnected = self.bus.next_reconnect()
            try:
                await asyncio.wait({fut, failed, reconnected}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            finally:
                failed.cancel()
                reconnected.cancel()
        self._raise_if_failed()
        self._check_connection(fut, sent_at)
        if not fut.done():
            raise nats.errors.TimeoutError
        fut.result()

    async def flush(self) -> None:
        while self.inflight:
            await self._pop()
