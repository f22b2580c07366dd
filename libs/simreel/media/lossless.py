"""Lossless stream files: depth and segmentation planes as FFV1 in Matroska, frame by frame.

Why FFV1/MKV (measured on 60 rendered cartpole frames at 320×240, benchmarks/RESULTS.md "Perception
streams"): for 16-bit depth it is 1.3 kB/frame against 1.8 kB for 16-bit PNG frames in a zip, encodes
3× faster (0.8 against 2.5 ms) and decodes as fast (0.7-0.9 ms); any FFmpeg (ffprobe, PyAV, OpenCV)
reads it back, with the exact values. Segmentation's bgra bytes go in as they are (1.1 kB/frame).

Choices that are not obvious:

* **Every frame is a keyframe** (`g=1`, FFV1 is intra-only anyway): a reader seeks to any frame and
  gets it exactly, as it does in the PNG zip.
* **Bit-exact output.** `fflags=+bitexact` keeps the Matroska muxer from writing its version string
  and a random segment UID; one encoder thread and fixed slices make FFV1's bytes independent of the
  machine, so the same frames give the same sha256 (as for the MP4s).
* **Timestamps** are the frame index at 1/fps; Matroska stores them in milliseconds, so read frame
  *k* by its index (its `video_t` is *k / fps*, as in telemetry.jsonl), not by a rounded timestamp.
"""
from __future__ import annotations

import os
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from simreel.media.errors import FrameFormatError, WriterClosedError
from simreel.media.info import VideoInfo, check_closable, finished

__all__ = ["LosslessWriter", "read_frames", "CHANNELS"]

# Pixel formats this writer takes (simreel.contract.streams' wire formats) and their numpy shape per pixel.
CHANNELS: dict[str, tuple[np.dtype, int]] = {"gray16le": (np.dtype("<u2"), 1), "bgra": (np.dtype(np.uint8), 4)}
_OPTIONS = {"level": "3", "slices": "4", "slicecrc": "1", "g": "1", "context": "0"}


class LosslessWriter:
    """Write `pix_fmt` frames (bytes or arrays of height × width in that format) to an FFV1 MKV."""

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, fps: int, pix_fmt: str) -> None:
        if pix_fmt not in CHANNELS:
            raise ValueError(f"pix_fmt must be one of {', '.join(CHANNELS)}, got {pix_fmt!r}")
        self.path = Path(path)
        self.width, self.height, self.fps, self.pix_fmt = width, height, fps, pix_fmt
        self._dtype, self._channels = CHANNELS[pix_fmt]
        self._frames = 0
        self._encode_s = 0.0
        self._info: VideoInfo | None = None
        self._aborted = False
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self._tmp), "w", format="matroska", options={"fflags": "+bitexact"})
        try:
            stream = self._container.add_stream("ffv1", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            cc = stream.codec_context
            cc.time_base = Fraction(1, fps)
            cc.thread_count = 1
            cc.flags |= int(av.codec.context.Flags.bitexact)
            cc.options = dict(_OPTIONS)
            self._stream = stream
        except Exception:
            self._container.close()
            self._tmp.unlink(missing_ok=True)
            raise

    @property
    def frames(self) -> int:
        return self._frames

    def _array(self, frame) -> np.ndarray:
        shape = (self.height, self.width) + ((self._channels,) if self._channels > 1 else ())
        if isinstance(frame, np.ndarray):
            arr = frame
            if arr.shape != shape or arr.dtype != self._dtype:
                raise FrameFormatError(f"frame is {arr.dtype}{arr.shape}, expected {self._dtype}{shape} {self.pix_fmt}")
            return np.ascontiguousarray(arr)
        buf = memoryview(frame).cast("B")
        expected = int(np.prod(shape)) * self._dtype.itemsize
        if len(buf) != expected:
            raise FrameFormatError(f"frame has {len(buf)} bytes, expected {expected} ({self.width}x{self.height} "
                                   f"{self.pix_fmt})")
        return np.frombuffer(buf, self._dtype).reshape(shape)

    def write(self, frame) -> None:
        if self._info is not None or self._aborted:
            raise WriterClosedError(f"write() on a closed LosslessWriter ({self.path})")
        t0 = time.perf_counter()
        vf = av.VideoFrame.from_ndarray(self._array(frame), format=self.pix_fmt)
        vf.pts = self._frames
        vf.time_base = Fraction(1, self.fps)
        self._container.mux(self._stream.encode(vf))
        self._frames += 1
        self._encode_s += time.perf_counter() - t0

    def close(self) -> VideoInfo:
        if self._info is not None:
            return self._info
        check_closable(self, self.path, aborted=self._aborted, frames=self._frames, abort=self.abort)
        t0 = time.perf_counter()
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
        except Exception:
            self.abort()
            raise
        os.replace(self._tmp, self.path)
        self._encode_s += time.perf_counter() - t0
        self._info = finished(self.path, kind="mkv", frames=self._frames, fps=self.fps, width=self.width,
                              height=self.height, codec="ffv1", encode_s=self._encode_s)
        return self._info

    def abort(self) -> None:
        if self._aborted or self._info is not None:
            return
        self._aborted = True
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - half-initialised container: the file goes anyway
            pass
        self._tmp.unlink(missing_ok=True)


def read_frames(path: str | os.PathLike) -> list[np.ndarray]:
    """Every frame of a lossless stream file, in its stored format: (H, W) uint16 depth or (H, W, 4)
    uint8 bgra segmentation (simreel.contract.streams.depth_metres / unpack_segmentation read them)."""
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format=f.format.name))
    return out
