"""Reading the EVENTS stream: everything stored so far (`replay`), past and future events as they
come (`follow`), and the last event of one subject (`last_event`).

The read models (runs, artifacts, the retention index) are folded from these reads; handlers use
`last_event` to look up what happened before the event they handle.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from dataclasses import dataclass
from typing import AsyncIterator

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext, api

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.runtime import log as logs
from simreel.transport.connection import JS_UNAVAILABLE, next_message

log = logs.get("simreel.bus")


@dataclass(frozen=True, slots=True)
class Logged:
    """The last event stored on a subject: its stream sequence, and the event (None if it does not decode)."""

    seq: int
    event: ev.Event | None


async def last_event(js: JetStreamContext, subject: str, *, deadline_s: float = 30.0) -> Logged | None:
    """The last event stored on an EVENTS subject (e.g. the run's last SimStarted), or None.

    Retried while JetStream cannot answer (a restart, a stream leader election after a node loss),
    up to `deadline_s`; then the error escapes, so a handler is retried instead of guessing."""
    delay, give_up = 0.25, time.monotonic() + deadline_s
    while True:
        try:
            raw = await js.get_last_msg(subjects.EVENTS_STREAM, subject)
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


async def replay(js: JetStreamContext, filter_subject: str | list[str] = subjects.ALL_EVENTS, *, batch: int = 256,
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
    sub = await js.pull_subscribe(filters[0], stream=subjects.EVENTS_STREAM, config=config)
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


async def follow(js: JetStreamContext, filter_subject: str, *, from_start: bool = True,
                 caught_up: asyncio.Event | None = None,
                 retries: collections.Counter[str] | None = None) -> AsyncIterator[ev.Event]:
    """Past and future events on a subject, in order, forever (the caller breaks out).

    Creating the consumer is retried while JetStream is briefly unavailable (a restart, a stream
    leader election in a cluster), each retry counted in `retries["follow"]`: a caller's own deadline
    bounds the wait, instead of a NATS API timeout escaping as if it were that deadline (nats'
    TimeoutError is an asyncio.TimeoutError). Once subscribed, the ordered consumer recreates itself
    after missed heartbeats. `caught_up` is set once every event stored before the call has been yielded.
    """
    while True:
        try:
            sub = await js.subscribe(
                filter_subject,
                stream=subjects.EVENTS_STREAM,
                ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.ALL if from_start else api.DeliverPolicy.NEW,
            )
            break
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError,
                nats.errors.ConnectionReconnectingError) as e:
            if retries is not None:
                retries["follow"] += 1
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
            m = await next_message(sub)
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
