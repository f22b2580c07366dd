"""Numbered PNG frames streamed into one zip: lossless frames for people who post-process.

Each frame is PNG-encoded (FFmpeg's encoder, paeth prediction: faster and smaller than zlib on raw
rows) and appended to the zip immediately, so memory does not grow with the episode except for the
zip central directory (~100 bytes per frame). Entries are STORED (PNG is already deflated; deflating
again costs CPU for ~0 gain) with a fixed 1980-01-01 timestamp and fixed permissions, so the same
frames give the same zip bytes.
"""
from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import av
import numpy as np

from simreel.runtime import log

from simreel.media.errors import WriterClosedError
from simreel.media.frames import Frame, as_rgb24
from simreel.media.info import VideoInfo, check_closable, finished

_log = log.get(__name__)

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can store; anything else would be wall clock


def frame_name(index: int) -> str:
    return f"frame_{index:06d}.png"


class PngZipWriter:
    """Write rgb24 frames as `frame_000000.png`, `frame_000001.png`, ... into the zip at `path`."""

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, fps: int = 0) -> None:
        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.path = Path(path)
        self.width, self.height = width, height
        self.fps = fps  # informational only (VideoInfo.duration_s); PNGs carry no timing
        self._frames = 0
        self._encode_s = 0.0
        self._info: VideoInfo | None = None
        self._aborted = False
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._zip = zipfile.ZipFile(self._tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        cc = av.CodecContext.create("png", "w")
        cc.width, cc.height, cc.pix_fmt = width, height, "rgb24"
        cc.thread_count = 1
        cc.flags |= int(av.codec.context.Flags.bitexact)
        self._cc = cc

    @property
    def frames(self) -> int:
        return self._frames

    def write(self, frame: Frame) -> None:
        if self._info is not None or self._aborted:
            raise WriterClosedError(f"write() on a closed PngZipWriter ({self.path})")
        t0 = time.perf_counter()
        arr = as_rgb24(frame, self.width, self.height)
        if arr.strides[1:] != (3, 1):
            arr = np.ascontiguousarray(arr)
        packets = self._cc.encode(av.VideoFrame.from_numpy_buffer(arr, format="rgb24"))
        data = b"".join(bytes(p) for p in packets)
        zi = zipfile.ZipInfo(frame_name(self._frames), date_time=_EPOCH)
        zi.compress_type = zipfile.ZIP_STORED
        zi.create_system = 3  # unix, whatever the host: part of the bytes
        zi.external_attr = 0o644 << 16
        self._zip.writestr(zi, data)
        self._frames += 1
        self._encode_s += time.perf_counter() - t0

    def close(self) -> VideoInfo:
        if self._info is not None:
            return self._info
        check_closable(self, self.path, aborted=self._aborted, frames=self._frames, abort=self.abort)
        t0 = time.perf_counter()
        self._zip.close()
        os.replace(self._tmp, self.path)
        self._encode_s += time.perf_counter() - t0
        self._info = finished(self.path, kind="png_zip", frames=self._frames, fps=self.fps, width=self.width,
                              height=self.height, codec="png", encode_s=self._encode_s)
        return self._info

    def abort(self) -> None:
        if self._aborted or self._info is not None:
            return
        self._aborted = True
        try:
            self._zip.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> PngZipWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
