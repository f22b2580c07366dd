"""Frames ↔ FrameBatch messages that always fit the server's max_payload.

Small frames are packed several to a message (fewer round trips); a frame larger than a message is
split into parts and joined again by the encoder, one frame at a time, so memory stays flat.

Frames are compressed here, as they are packed (simreel.transport.framecodec, zstd by default): the packer runs
in the publishing thread, never the render thread, and it fills each message by compressed size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgspec

from simreel.transport import framecodec
from simreel.contract import streams as stream_planes
from simreel.contract.events import FrameBatch, FrameStream

# Room for the msgpack envelope and NATS headers (telemetry rows are counted as they are added).
ENVELOPE_BYTES = 16 * 1024
MAX_FRAMES_PER_BATCH = 32

_row_size = msgspec.msgpack.Encoder().encode


class FrameSequenceError(ValueError):
    """Frames arrived out of order or with a gap: the stream is not usable as is."""


@dataclass
class FramePacker:
    run_id: str
    attempt: int
    episode: int
    width: int
    height: int
    max_payload: int
    seq: int = 0
    compression: str = framecodec.DEFAULT
    # The planes of each frame (simreel.contract.streams); empty = rgb24 alone.
    streams: list[FrameStream] = field(default_factory=list)
    _frames: list[bytes] = field(default_factory=list)
    _times: list[float] = field(default_factory=list)
    _telemetry: list[dict[str, Any]] = field(default_factory=list)
    _first: int = 0
    _bytes: int = 0
    _compressor: framecodec.FrameCompressor | None = None

    def __post_init__(self) -> None:
        if self.compression not in framecodec.COMPRESSIONS:
            raise ValueError(f"frame compression must be one of {', '.join(framecodec.COMPRESSIONS)}, "
                             f"got {self.compression!r}")
        if self.compression == "zstd":
            self._compressor = framecodec.FrameCompressor()

    @property
    def frame_bytes(self) -> int:
        return stream_planes.frame_bytes(self.width, self.height, self.streams)

    @property
    def budget(self) -> int:
        return max(self.max_payload - ENVELOPE_BYTES, 4096)

    @property
    def pending(self) -> int:
        """Frames added and not yet in a batch: the episode's end or an abort decides their fate."""
        return len(self._frames)

    def _batch(self, **kw) -> FrameBatch:
        b = FrameBatch(run_id=self.run_id, attempt=self.attempt, episode=self.episode, seq=self.seq,
                       width=self.width, height=self.height, compression=self.compression,
                       streams=self.streams, **kw)
        self.seq += 1
        return b

    def add(self, index: int, t: float, pixels: bytes, telemetry: dict[str, Any] | None = None) -> list[FrameBatch]:
        if len(pixels) != self.frame_bytes:
            raise ValueError(f"frame {index} has {len(pixels)} bytes, expected {self.frame_bytes}")
        data = pixels if self._compressor is None else self._compressor.compress(pixels)
        out: list[FrameBatch] = []
        size = len(data) + (len(_row_size(telemetry)) if telemetry else 0)
        if size > self.budget:
            out.extend(self.flush())
            parts = math.ceil(len(data) / self.budget)
            step = math.ceil(len(data) / parts)
            view = memoryview(data)
            for p in range(parts):
                out.append(self._batch(first_index=index, count=1, times=[t], frames=bytes(view[p * step:(p + 1) * step]),
                                       part=p, parts=parts, telemetry=[telemetry] if (telemetry and p == 0) else []))
            return out
        if self._frames and self._bytes + size > self.budget:
            out.extend(self.flush())
        if not self._frames:
            self._first = index
        self._frames.append(data)
        self._times.append(t)
        self._bytes += size
        if telemetry is not None:
            self._telemetry.append(telemetry)
        # Send as soon as a frame like this one would not fit: no waiting for the next frame.
        if len(self._frames) >= MAX_FRAMES_PER_BATCH or self._bytes + size > self.budget:
            out.extend(self.flush())
        return out

    def flush(self, *, last: bool = False, aborted: bool = False) -> list[FrameBatch]:
        if not self._frames:
            return [self._batch(first_index=0, count=0, last=True, aborted=aborted)] if (last or aborted) else []
        b = self._batch(first_index=self._first, count=len(self._frames), times=self._times,
                        frames=b"".join(self._frames), telemetry=self._telemetry, last=last, aborted=aborted)
        self._frames, self._times, self._telemetry, self._bytes = [], [], [], 0
        return [b]


    def abort(self) -> list[FrameBatch]:
        """The marker that tells the encoder this attempt died: pending frames are dropped, and the
        marker takes the next sequence number of the episode, so JetStream's duplicate window (ids
        are `run.attempt.episode.seq`) never mistakes it for a batch already sent."""
        self._frames, self._times, self._telemetry, self._bytes = [], [], [], 0
        return [self._batch(first_index=0, count=0, last=True, aborted=True)]


def frame_buffers(batch: FrameBatch) -> list[bytes | memoryview]:
    """The pixels of each whole frame of the batch, decompressed if need be (raw frames are views into
    the message, not copies). Raises framecodec.CorruptFrames; not for parts of a split frame."""
    size = stream_planes.frame_bytes(batch.width, batch.height, batch.streams)
    if batch.compression == "none":
        if len(batch.frames) != size * batch.count:
            raise FrameSequenceError(f"batch {batch.seq}: {len(batch.frames)} bytes for {batch.count} frames of {size}")
        view = memoryview(batch.frames)
        return [view[i * size:(i + 1) * size] for i in range(batch.count)]
    # Views, as for raw frames: stacked camera views are sliced out of a frame without copies.
    return [memoryview(b) for b in framecodec.decompress_frames(batch.frames, size, batch.count)]


def inflate(batch: FrameBatch) -> FrameBatch:
    """The batch with its whole frames decompressed into one buffer (compression "none"); split parts
    are left as they are. Raises framecodec.CorruptFrames."""
    if batch.compression == "none" or batch.parts > 1 or batch.count == 0:
        return batch
    raw = b"".join(frame_buffers(batch))
    return msgspec.structs.replace(batch, compression="none",
                                   frames=memoryview(raw) if isinstance(batch.frames, memoryview) else raw)


@dataclass
class Frame:
    index: int
    t: float
    pixels: bytes | memoryview
    telemetry: dict[str, Any] | None


class FrameAssembler:
    """Turns an episode's FrameBatch stream back into whole frames, in order, exactly once."""

    def __init__(self) -> None:
        self.expected = 0
        self._parts: list[bytes] = []
        self._part_meta: tuple[int, float, dict | None] | None = None

    def feed(self, batch: FrameBatch, pixels: list[bytes | memoryview] | None = None) -> list[Frame]:
        """`pixels`: the batch's frames already decompressed (frame_buffers, as the encoder's prefetch
        does in a worker thread); else they are taken from the batch here."""
        if batch.count == 0:
            return []
        if batch.first_index < self.expected:
            return []  # a duplicate of what we already have (redelivery)
        if batch.parts > 1:
            return self._feed_part(batch)
        if batch.first_index != self.expected:
            raise FrameSequenceError(f"episode {batch.episode}: expected frame {self.expected}, got {batch.first_index}")
        if pixels is None:
            try:
                pixels = frame_buffers(batch)
            except framecodec.CorruptFrames as e:
                raise FrameSequenceError(f"batch {batch.seq}: {e}") from None
        tel = batch.telemetry if len(batch.telemetry) == batch.count else [None] * batch.count
        # Views into the batch (or zstd's own buffers), not copies: at 640x480 a copy per frame is measurable.
        out = [Frame(batch.first_index + i, batch.times[i], pixels[i], tel[i]) for i in range(batch.count)]
        self.expected += batch.count
        return out

    def _feed_part(self, batch: FrameBatch) -> list[Frame]:
        if batch.first_index != self.expected:
            raise FrameSequenceError(f"episode {batch.episode}: expected frame {self.expected}, got part of {batch.first_index}")
        if batch.part != len(self._parts):
            if batch.part < len(self._parts):
                return []  # duplicate part
            raise FrameSequenceError(f"frame {batch.first_index}: expected part {len(self._parts)}, got {batch.part}")
        if batch.part == 0:
            self._part_meta = (batch.first_index, batch.times[0], batch.telemetry[0] if batch.telemetry else None)
        self._parts.append(batch.frames)
        if len(self._parts) < batch.parts:
            return []
        index, t, tel = self._part_meta  # type: ignore[misc]
        pixels = b"".join(self._parts)
        self._parts, self._part_meta = [], None
        size = stream_planes.frame_bytes(batch.width, batch.height, batch.streams)
        if batch.compression != "none":
            try:
                pixels = framecodec.decompress(pixels, size)
            except framecodec.CorruptFrames as e:
                raise FrameSequenceError(f"frame {index}: {e}") from None
        if len(pixels) != size:
            raise FrameSequenceError(f"frame {index}: reassembled {len(pixels)} bytes")
        self.expected += 1
        return [Frame(index, t, pixels, tel)]
