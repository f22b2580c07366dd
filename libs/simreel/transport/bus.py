"""The one place that talks to NATS: `Bus` is what services, the client and recorders hold.

Services hand in plain handlers (`event -> events`) and get JetStream semantics around them:
ack only after the resulting events are published, `in_progress()` while a handler runs long,
bounded redelivery, and a dead-letter event instead of a crash or an endless loop.

`Bus` composes the transport's parts, each in a module of its own: the connection
(`connection`), the streams (`stream_setup`), publishing events (`publishing`), claiming work
(`work_claiming`), reading the event log (`event_log`) and the FRAMES stream (`frame_stream`).
The names below are re-exported so `simreel.transport.bus` stays the one import for callers.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping

import nats
from nats.js import api

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.runtime.config import NatsSettings
from simreel.transport import event_log, frame_stream, publishing, work_claiming
from simreel.transport.connection import JS_UNAVAILABLE, Reconnections, connect, listen, tls_client_context
from simreel.transport.event_log import Logged
from simreel.transport.frame_stream import FramePublisher
from simreel.transport.handler import Delivery, Handler, HandlerBus, PermanentError, Refusal, handler_events
from simreel.transport.stream_setup import (FRAMES_DEFAULT_BYTES, FRAMES_MIN_BYTES, FramesStorageError,
                                            ensure_streams)

__all__ = [
    "Bus", "connect", "tls_client_context", "JS_UNAVAILABLE", "Delivery", "Handler", "HandlerBus", "Refusal",
    "PermanentError", "handler_events", "Logged", "FramePublisher", "FRAMES_DEFAULT_BYTES", "FRAMES_MIN_BYTES",
    "FramesStorageError",
]


class Bus:
    def __init__(self, nc: nats.NATS, *, replicas: int = 1, frames_max_bytes: int = 0) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=10)
        self.replicas = replicas
        self.frames_max_bytes = frames_max_bytes  # 0: sized from what the server can hold
        # How long in-flight work may run on after stop before it is cancelled and nak'ed back
        # (service.serve sets it from SIMREEL_SHUTDOWN_GRACE_S; keep it below the orchestrator's kill timeout).
        self.shutdown_grace_s = 20.0
        self._reconnections = Reconnections()
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

    # --- the connection ----------------------------------------------------------------------------

    @property
    def reconnects(self) -> int:
        """How many times the client has reconnected since it first connected."""
        return int(self.nc.stats.get("reconnects", 0))

    def notify_reconnected(self) -> None:
        self._reconnections.notify()

    def next_reconnect(self) -> asyncio.Future:
        """Resolves when the connection next comes back after a drop (only for buses made by
        `Bus.connect`, which wires the client's reconnect callback to `notify_reconnected`)."""
        return self._reconnections.next()

    @property
    def max_payload(self) -> int:
        return self.nc.max_payload

    async def listen(self, subject: str, callback: Callable[[str, bytes], Awaitable[None]]) -> Any:
        """Every message published on `subject` from now on, as (subject, data), without replay or
        acks (a live recorder's controls); the subscription is returned for `unsubscribe()`."""
        return await listen(self.nc, subject, callback)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.drain()

    # --- streams -----------------------------------------------------------------------------------

    async def ensure_streams(self) -> None:
        """Create EVENTS and FRAMES if missing (see `stream_setup.ensure_streams`)."""
        await ensure_streams(self.js, replicas=self.replicas, frames_max_bytes=self.frames_max_bytes,
                             retries=self.retries)

    # --- publishing --------------------------------------------------------------------------------

    async def publish(self, event: ev.Event, *, retries: int = 20) -> api.PubAck:
        """Publish one event to the EVENTS stream with Nats-Msg-Id = event_id, retrying while NATS is
        briefly away (reconnecting), so an ack is never sent for a fact that was not stored."""
        return await publishing.publish_event(self.js, event, retries=retries)

    async def publish_all(self, events: Iterable[ev.Event]) -> None:
        await publishing.publish_events(self.js, events)

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
        On stop, in-flight work gets `grace_s` (default `shutdown_grace_s`) to finish, then is
        cancelled and nak'ed back so another replica takes it over.
        """
        js = self.js

        def publish(event: ev.Event) -> Awaitable[api.PubAck]:
            return publishing.publish_event(js, event)

        claimer = work_claiming.WorkClaimer(js, service, handlers, publish=publish, ack_wait_s=ack_wait_s,
                                            max_deliver=max_deliver, on_undecodable=on_undecodable)
        await claimer.run(stop, concurrency=concurrency,
                          grace_s=self.shutdown_grace_s if grace_s is None else grace_s)

    async def waiting_pullers(self, consumer: str, stream: str = subjects.EVENTS_STREAM) -> int:
        """How many fetches are waiting on a durable consumer (0 if it does not exist yet)."""
        return await work_claiming.waiting_pullers(self.js, consumer, stream)

    # --- reading the log ---------------------------------------------------------------------------

    async def last_event(self, subject: str, *, deadline_s: float = 30.0) -> Logged | None:
        """The last event stored on an EVENTS subject (e.g. the run's last SimStarted), or None;
        retried while JetStream cannot answer, up to `deadline_s`."""
        return await event_log.last_event(self.js, subject, deadline_s=deadline_s)

    def replay(self, filter_subject: str | list[str] = subjects.ALL_EVENTS, *, batch: int = 256,
               include_invalid: bool = False) -> AsyncIterator[ev.Event]:
        """Every event stored so far on the subjects, oldest first, then stop."""
        return event_log.replay(self.js, filter_subject, batch=batch, include_invalid=include_invalid)

    def follow(self, filter_subject: str, *, from_start: bool = True,
               caught_up: asyncio.Event | None = None) -> AsyncIterator[ev.Event]:
        """Past and future events on a subject, in order, forever (the caller breaks out);
        `caught_up` is set once every event stored before the call has been yielded."""
        return event_log.follow(self.js, filter_subject, from_start=from_start, caught_up=caught_up,
                                retries=self.retries)

    # --- frames ------------------------------------------------------------------------------------

    async def publish_frame_data(self, subject: str, data: bytes, msg_id: str | None) -> asyncio.Future:
        """Publish one encoded FrameBatch without waiting for its ack; the future resolves to it.
        Without `msg_id` JetStream does not deduplicate it. (Here, not in frame_stream: every frame
        message goes through this call, so it stays one call deep.)"""
        return await self.js.publish_async(subject, data, headers={"Nats-Msg-Id": msg_id} if msg_id else None)

    async def subscribe_frames(self, run_id: str, attempt: int, *, episode: int | None = None,
                               start_seq: int | None = None):
        """An ephemeral pull consumer over one attempt's frames (or one episode's), in stream order."""
        return await frame_stream.subscribe_frames(self.js, run_id, attempt, episode=episode, start_seq=start_seq)

    async def purge_frames(self, run_id: str, attempt: int | None = None) -> None:
        """Drop frames nobody will read again (their video is staged, or their attempt is dead)."""
        await frame_stream.purge_frames(self.js, run_id, attempt)

    async def frame_subjects(self) -> list[str]:
        """Every subject that has frames in FRAMES now."""
        return await frame_stream.frame_subjects(self.js)

    def watch_frames(self, run_id: str) -> AsyncIterator[ev.FrameBatchView]:
        """A run's frames as they are published, for onlookers such as a live preview."""
        return frame_stream.watch_frames(self.js, run_id)
