"""Publishing events to the EVENTS stream, each once (Nats-Msg-Id = event_id), riding out a NATS
that is briefly away, so an ack is never sent for a fact that was not stored."""
from __future__ import annotations

import asyncio
from typing import Iterable

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext, api

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.runtime import log as logs

log = logs.get("simreel.bus")


async def publish_event(js: JetStreamContext, event: ev.Event, *, retries: int = 20) -> api.PubAck:
    """Publish one event on its subject, retrying while NATS is reconnecting or JetStream does not
    answer; the last failure escapes after `retries` tries."""
    data = ev.encode(event)
    subject = subjects.subject_for(event)
    delay = 0.1
    for attempt in range(retries):
        try:
            return await js.publish(subject, data, headers={"Nats-Msg-Id": event.event_id})
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError,
                nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
                nats.js.errors.ServiceUnavailableError) as e:
            if attempt == retries - 1:
                raise
            log.warning("publish_retry", subject=subject, error=type(e).__name__, attempt=attempt + 1)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


async def publish_events(js: JetStreamContext, events: Iterable[ev.Event]) -> None:
    """Publish events one after the other, in order (the next only once the last is stored)."""
    for e in events:
        await publish_event(js, e)
