"""What a handler is to the bus: the `Delivery` it is handed, the events it gives back, and
`HandlerBus`, the part of the bus it may use.

A handler returns the events that follow from the one it handles, or yields them as they happen
(a long run announces each video as soon as it exists). It never publishes them itself: the bus
publishes what comes out, in order, then acks. Typing handlers against `HandlerBus` instead of
`Bus` lets tests/support's MemoryBus run them without NATS.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Protocol

from nats.aio.msg import Msg

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.transport.event_log import Logged


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
