"""Frame batches read ahead of the encoder: fetched, decoded and decompressed while the current
frames are being encoded, so reading from JetStream, zstd and x264 overlap.

Decompression runs in a worker thread (zstd releases the GIL), not on the event loop. Read-ahead is
bounded by decompressed bytes, not by message count: a compressed message can hold 32 frames.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import msgspec
import nats.errors

from simreel.contract import events as ev
from simreel.runtime.cancel import raise_if_cancel_lost
from simreel.transport.framecodec import CorruptFrames
from simreel.transport.framing import frame_buffers

READ_AHEAD_BYTES = 32 * 1024 * 1024


@dataclass(slots=True)
class Fetched:
    """One message of the run's frames: its batch, or why it cannot be used."""

    msg: object
    batch: ev.FrameBatchView | None
    problem: str | None = None
    pixels: list | None = None  # the whole frames, decompressed (None: parts, or not decoded yet)


def _decode(m) -> Fetched:
    try:
        batch = ev.decode_frames_view(m.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        return Fetched(m, None, f"undecodable frame batch on {m.subject}: {e}")
    return Fetched(m, batch)


def _inflate(it: Fetched) -> Fetched:
    b = it.batch
    try:
        return Fetched(it.msg, b, pixels=frame_buffers(b))
    except CorruptFrames as e:
        return Fetched(it.msg, None, f"corrupt compressed frame batch on {it.msg.subject} (seq {b.seq}, frames "
                                     f"{b.first_index}..{b.first_index + b.count - 1}): {e}")


# Longest wait for a partial batch of frames (see Prefetch._run).
FETCH_SLICE_S = 0.25


class Prefetch:
    """Keeps the next fetch in flight while the current frames are encoded in a thread.

    `subscribe(start_seq)` makes the run's consumer (from the first frame when `start_seq` is None).
    The consumer does not ack (frames stay in FRAMES until the run is encoded), so a message the
    server delivered but this process never read — a connection dropped as a slow consumer, a fetch
    that gave up as the message arrived — is not sent again: `resume(seq)` starts over after the last
    message the job used, and the frames still in the stream fill the gap.
    """

    def __init__(self, subscribe: Callable[[int | None], Awaitable[object]], *, batch: int = 8,
                 timeout: float = 2.0, max_bytes: int = READ_AHEAD_BYTES) -> None:
        self._subscribe, self._batch, self._timeout, self._max = subscribe, batch, timeout, max_bytes
        self._items: collections.deque = collections.deque()
        self._bytes = 0
        self._changed = asyncio.Event()
        self._sub = None
        self._task: asyncio.Task | None = None

    async def start(self, start_seq: int | None = None) -> "Prefetch":
        self._sub = await self._subscribe(start_seq)
        self._task = asyncio.create_task(self._run())
        return self

    async def resume(self, after_seq: int) -> None:
        """Drop what was read ahead and read again from stream sequence `after_seq + 1`."""
        await self.close()
        self._items.clear()
        self._bytes = 0
        await self.start(after_seq + 1)

    async def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            try:
                # A pull for `batch` messages lingers until it has them all or its time is up, so
                # frames that trickle in (a training loop's short episode, its last message) would
                # wait out the whole timeout: short pulls hand them over within FETCH_SLICE_S. The
                # reader still hears of idleness (TimeoutError) only once per `timeout`.
                msgs = await self._sub.fetch(self._batch, timeout=min(FETCH_SLICE_S, self._timeout))
                # A cancel nats-py dropped (simreel.runtime.cancel) ends the loop here, or close() would
                # wait forever on a read-ahead that fetches on.
                raise_if_cancel_lost()
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                # nats-py raises the plain asyncio.TimeoutError when the slice runs out between its
                # no-wait probe and the lingering pull: still "no message yet", not a failure.
                if time.monotonic() - idle_since >= self._timeout:
                    idle_since = time.monotonic()
                    self._push(None, 0)
                continue
            except Exception as e:  # noqa: BLE001 - handed to the reader, which decides
                self._push(e, 0)
                return
            idle_since = time.monotonic()
            for m in msgs:
                while self._bytes >= self._max:
                    self._changed.clear()
                    await self._changed.wait()
                it = _decode(m)
                b = it.batch
                if b is not None and b.compression != "none" and b.parts == 1 and b.count:
                    it = await asyncio.to_thread(_inflate, it)
                self._push([it], (b.width * b.height * 3 * b.count if it.pixels else len(b.frames)) if it.batch else 0)

    def _push(self, item, size: int) -> None:
        self._items.append((item, size))
        self._bytes += size
        self._changed.set()

    async def get(self) -> list[Fetched]:
        """The next message(s); raises nats' TimeoutError when a fetch found nothing."""
        while not self._items:
            self._changed.clear()
            await self._changed.wait()
        item, size = self._items.popleft()
        self._bytes -= size
        self._changed.set()
        if item is None:
            raise nats.errors.TimeoutError
        if isinstance(item, Exception):
            raise item
        return item

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(self._task, return_exceptions=True)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        self._task = self._sub = None
