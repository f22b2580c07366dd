"""Timers of the services: housekeeping that runs every so often rather than on an event.

A tick is shaped like a handler without an event: it returns the events that follow from what it
did, or yields them as they happen, and `every` publishes them. So services publish only through the
bus's loops, and a tick is tested like a handler ("given this log, these events come out").
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Protocol

from simreel.contract import events as ev
from simreel.runtime import log as logs
from simreel.transport.bus import handler_events

Tick = Callable[[], Awaitable[Iterable[ev.Event]] | AsyncIterator[ev.Event]]


class Publisher(Protocol):
    """What `every` uses of the bus."""

    async def publish(self, event: ev.Event) -> Any: ...


async def tick_events(tick: Tick) -> AsyncIterator[ev.Event]:
    """What a tick produces, as one stream whether it returns a list or is an async generator (read
    as the bus reads a handler's)."""
    async for e in handler_events(lambda _event, _delivery: tick(), None, None):
        yield e


async def every(bus: Publisher, interval_s: float, tick: Tick, stop: asyncio.Event, *, log: Any = None,
                failed: str = "tick_failed") -> None:
    """Run `tick` every `interval_s` until `stop` is set, publishing each event it produces as it
    comes (so an effect is announced before the tick's next one starts). A failed tick is logged as
    `failed` and the next one tries again: housekeeping never stops a service."""
    log = log or logs.get("simreel.periodic")
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        if stop.is_set():
            return
        try:
            async for e in tick_events(tick):
                await bus.publish(e)
        except Exception as e:  # noqa: BLE001 - the next tick tries again
            log.warning(failed, error=f"{type(e).__name__}: {e}")
