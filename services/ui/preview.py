"""Live preview of a run in flight: the latest rendered frame, downscaled, a few times a second.

Frames come from FRAMES through an ephemeral consumer of the ui's own (`Bus.watch_frames`), opened
only while a page watches the run and closed when the last one leaves: the simulator publishes as
fast as ever and the encoders' durable consumer is untouched. Most frames are only counted (that is
the "frames simulated" progress); one every `interval_s` is shrunk and sent as a PNG.
"""
from __future__ import annotations

import asyncio
import struct
import time
import zlib
from typing import AsyncIterator, Callable, Sequence

import numpy as np

from simreel.contract import events as ev
from simreel.transport import framecodec
from simreel.contract import streams
from simreel.runtime import log as logs

from .live import Live

log = logs.get("ui.preview")

MAX_WIDTH = 320


def png(rgb: np.ndarray) -> bytes:
    """A minimal RGB PNG (zlib level 1): previews are small and made a few times a second."""
    h, w, _ = rgb.shape
    raw = np.empty((h, w * 3 + 1), np.uint8)
    raw[:, 0] = 0  # filter: none
    raw[:, 1:] = rgb.reshape(h, w * 3)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 1)) + chunk(b"IEND", b""))


def shrink(frame: bytes | memoryview, width: int, height: int, max_width: int = MAX_WIDTH) -> np.ndarray:
    step = max(1, -(-width // max_width))
    arr = np.frombuffer(frame, np.uint8, width * height * 3).reshape(height, width, 3)
    return np.ascontiguousarray(arr[::step, ::step])


def preview_png(data: bytes | memoryview, compression: str, count: int, width: int, height: int,
                 planes: Sequence[ev.FrameStream] = ()) -> bytes | None:
    """The last frame of a batch (decompressed when the batch is), shrunk, as PNG: its rgb plane."""
    frame_bytes = streams.frame_bytes(width, height, planes)
    if compression == "zstd":
        try:
            data = framecodec.decompress(data, count * frame_bytes)
        except framecodec.CorruptFrames:
            return None
    if len(data) < count * frame_bytes:
        return None
    return png(shrink(data[(count - 1) * frame_bytes:(count - 1) * frame_bytes + width * height * 3], width, height))


class Previews:
    """One frames watcher per watched run, shared by every page that watches it."""

    def __init__(self, live: Live, source: Callable[[str], AsyncIterator[ev.FrameBatchView]], *,
                 interval_s: float = 0.25) -> None:
        self.live = live
        self.source = source
        self.interval_s = interval_s
        self._watchers: dict[str, tuple[asyncio.Task, int]] = {}

    def watch(self, run_id: str) -> None:
        task, n = self._watchers.get(run_id, (None, 0))
        if task is None or task.done():
            task = asyncio.create_task(self._follow(run_id))
        self._watchers[run_id] = (task, n + 1)

    def unwatch(self, run_id: str) -> None:
        task, n = self._watchers.get(run_id, (None, 0))
        if task is None:
            return
        if n <= 1:
            task.cancel()
            del self._watchers[run_id]
        else:
            self._watchers[run_id] = (task, n - 1)

    async def close(self) -> None:
        tasks = [t for t, _ in self._watchers.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watchers.clear()

    async def _follow(self, run_id: str) -> None:
        last_sent = 0.0
        parts: list[bytes] | None = None  # a split frame being collected
        try:
            async for b in self.source(run_id):
                if b.aborted or not b.count and not b.parts > 1:
                    continue
                state = self.live.index.runs.get(run_id)
                if state is not None and state.attempt and b.attempt < state.attempt:
                    continue  # frames of a superseded attempt
                frames = state.frames_per_episode if state else None
                newest = b.first_index + max(b.count, 1) - 1
                self.live.progress(run_id, b.episode, newest, frames)
                due = time.monotonic() - last_sent >= self.interval_s
                if b.parts > 1:  # one frame split across messages: collect it only when a preview is due
                    if b.part == 0:
                        parts = [] if due else None
                    if parts is None:
                        continue
                    parts.append(bytes(b.frames))
                    if b.part < b.parts - 1:
                        continue
                    data: bytes | memoryview = b"".join(parts)
                    parts = None
                    count = 1
                elif due:
                    data, count = b.frames, b.count
                else:
                    continue
                img = await asyncio.to_thread(preview_png, data, b.compression, count, b.width, b.height,
                                              b.streams)
                if img is None:
                    continue
                self.live.preview(run_id, img, b.episode, newest)
                last_sent = time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a preview is best effort; the page keeps working
            log.warning("preview_stopped", run_id=run_id, error=f"{type(e).__name__}: {e}")
