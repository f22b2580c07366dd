"""A cancellation that nats-py loses on Python 3.11 must not leave a reader running forever.

On 3.11, `asyncio.wait_for` (inside nats-py's fetch and next_msg) returns the message and drops the
cancellation when both arrive in the same loop turn. `LosingSub` does exactly that on every cancel,
so these tests see, every time, what the encoder's prefetch met about once in thirty short clips.
"""
from __future__ import annotations

import asyncio

import pytest

from services.encoder.prefetch import Prefetch
from simreel.runtime.cancel import raise_if_cancel_lost


class LosingSub:
    """A pull subscription whose fetch answers the first cancellation with messages, as 3.11's
    wait_for can; later ones are honoured (so a failing test still tears down)."""

    def __init__(self) -> None:
        self.fetches = 0
        self.lost = 0
        self.unsubscribed = False

    async def fetch(self, batch: int, timeout: float):
        self.fetches += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if self.lost:
                raise
            self.lost += 1
            return []  # the message arrived as the cancel did: returned, cancellation dropped

    async def unsubscribe(self) -> None:
        self.unsubscribed = True


@pytest.mark.asyncio
async def test_prefetch_close_returns_when_fetch_drops_the_cancellation():
    sub = LosingSub()

    async def subscribe(start_seq):
        return sub

    prefetch = await Prefetch(subscribe).start()
    await asyncio.sleep(0)  # the read-ahead task is now inside fetch
    assert sub.fetches == 1
    closing = asyncio.create_task(prefetch.close())
    done, _ = await asyncio.wait({closing}, timeout=5)
    assert closing in done, "close() hung: the read-ahead task fetched on after its cancellation was lost"
    assert sub.lost == 1 and sub.unsubscribed and sub.fetches == 1  # it ended; it did not fetch on


@pytest.mark.asyncio
async def test_a_loop_reading_after_a_dropped_cancellation_ends():
    sub = LosingSub()
    reads = 0

    async def reader() -> None:
        nonlocal reads
        while True:
            await sub.fetch(1, timeout=1)
            reads += 1
            raise_if_cancel_lost()

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled() and sub.lost == 1 and reads == 1


@pytest.mark.asyncio
async def test_a_reader_nobody_cancelled_reads_on():
    async def reader() -> int:
        reads = 0
        for _ in range(3):
            await asyncio.sleep(0)
            reads += 1
            raise_if_cancel_lost()
        return reads

    assert await asyncio.wait_for(reader(), 5) == 3


@pytest.mark.asyncio
async def test_a_cancellation_handled_and_withdrawn_does_not_end_the_reader():
    async def reader() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()  # handled: this task chose to carry on
        raise_if_cancel_lost()
        return "read on"

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)
    task.cancel()
    assert await asyncio.wait_for(task, 5) == "read on"
