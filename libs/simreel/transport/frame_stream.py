"""The FRAMES stream: publishing a run's frames with bounded bytes in flight (over the bus's
`publish_frame_data`), reading one attempt's frames back (the encoder), watching them live (a
preview), and purging them once nobody will read them again."""
from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import TYPE_CHECKING, AsyncIterator

import msgspec
import nats.errors
from nats.js import JetStreamContext, api

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.transport.connection import next_message

if TYPE_CHECKING:
    from simreel.transport.bus import Bus


async def subscribe_frames(js: JetStreamContext, run_id: str, attempt: int, *, episode: int | None = None,
                           start_seq: int | None = None):
    """An ephemeral pull consumer over one attempt's frames (or one episode's), in stream order
    (the encoder's read), from the first frame or from stream sequence `start_seq`. It does not
    ack: frames stay in FRAMES until the run is encoded, so a reader can start over."""
    subject = subjects.run_frames(run_id, attempt) if episode is None else subjects.frames(run_id, attempt, episode)
    return await js.pull_subscribe(
        subject, stream=subjects.FRAMES_STREAM,
        config=api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.ALL if start_seq is None else api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start_seq, ack_policy=api.AckPolicy.NONE, inactive_threshold=300.0,
            mem_storage=True))


async def purge_frames(js: JetStreamContext, run_id: str, attempt: int | None = None) -> None:
    """Drop frames nobody will read again (their video is staged, or their attempt is dead)."""
    await js.purge_stream(subjects.FRAMES_STREAM, subject=subjects.run_frames(run_id, attempt))


async def frame_subjects(js: JetStreamContext) -> list[str]:
    """Every subject that has frames in FRAMES now."""
    info = await js.stream_info(subjects.FRAMES_STREAM, subjects_filter=subjects.ALL_FRAMES)
    return list(info.state.subjects or {})


async def watch_frames(js: JetStreamContext, run_id: str) -> AsyncIterator[ev.FrameBatchView]:
    """A run's frames as they are published (starting with the latest of each episode), for
    onlookers such as a live preview. An ephemeral ordered consumer of its own: the encoders'
    durable consumer, and the simulator's publishing, never notice it."""
    sub = await js.subscribe(subjects.run_frames(run_id), stream=subjects.FRAMES_STREAM,
                             ordered_consumer=True, deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT)
    try:
        while True:
            m = await next_message(sub)
            try:
                yield ev.decode_frames_view(m.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


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
