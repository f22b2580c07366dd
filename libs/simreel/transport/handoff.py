"""A bounded hand-off from a plain thread to an asyncio loop: the one way frames cross from a producer
thread (the simulator's render loop, a Gymnasium env's `step()`) to the code that publishes them.

Why bounded: this queue is the only place frames wait, so its bound is the producer's memory
footprint whatever the episode's length; a slow publisher blocks the producer (backpressure).
Why no round trip per item: the producer only blocks when the queue is full, it never waits for the
event loop to take each item (that would pace the producer by the loop).
"""
from __future__ import annotations

import asyncio
import collections
import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

# How often a blocked producer re-checks whether it should give up (cancelled, consumer gone).
POLL_S = 0.5


class Handoff(Generic[T]):
    """Items put by one thread, taken in order by coroutines of one loop.

    `max_items` and `max_bytes` (0: unbounded) bound what waits; an item larger than `max_bytes`
    still passes when the queue is empty, so one big frame never deadlocks the producer.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, max_items: int = 0, max_bytes: int = 0) -> None:
        self._loop = loop
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._items: collections.deque[tuple[T, int]] = collections.deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._ready = asyncio.Event()

    def _full(self, nbytes: int) -> bool:
        if not self._items:
            return False
        return bool((self._max_items and len(self._items) >= self._max_items)
                    or (self._max_bytes and self._bytes + nbytes > self._max_bytes))

    def put(self, item: T, nbytes: int = 0, *, check: Callable[[], None] | None = None) -> None:
        """Queue `item`, blocking while the queue is full. `check` is called while blocked and before
        queueing; it raises to make the producer give up (cancelled, or nobody will ever take it)."""
        with self._cond:
            while self._full(nbytes):
                if check is not None:
                    check()
                self._cond.wait(POLL_S)
            if check is not None:
                check()
            self._items.append((item, nbytes))
            self._bytes += nbytes
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the loop is closed: its thread is gone
            if check is not None:
                check()
            raise

    def take(self) -> T | None:
        """The next item, or None when the queue is empty (loop side, never blocks)."""
        with self._cond:
            if not self._items:
                return None
            item, nbytes = self._items.popleft()
            self._bytes -= nbytes
            self._cond.notify_all()
            return item

    async def get(self) -> T:
        """The next item, waiting for one (loop side)."""
        while True:
            # Cleared before looking, so a put between the look and the wait still wakes us.
            self._ready.clear()
            item = self.take()
            if item is not None:
                return item
            await self._ready.wait()
