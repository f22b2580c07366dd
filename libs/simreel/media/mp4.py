"""Streaming MP4 writer: frames go in one at a time, memory stays flat however long the episode.

Choices that are not obvious:

* **Odd sizes are padded, not scaled.** yuv420p needs even dimensions. We replicate the last column/row
  (no black seam, no resampling blur, sim pixels stay 1:1) and report the *encoded* size in
  `VideoInfo.width/height`; `source_width/source_height` keep what the caller asked for.
* **Colour is BT.709, limited range, and tagged as such.** swscale defaults to BT.601 untagged, which
  browsers decode as BT.709 for HD sizes -> shifted colours. Explicit matrix + tags avoid the guess.
* **Bit-exact output.** `fflags=+bitexact` drops the `Lavf…` encoder string, no creation_time is ever
  set, swscale runs with BITEXACT|ACCURATE_RND (no CPU-dependent SIMD rounding) and encoder threads are
  pinned, so the same frames give the same sha256 on every run.
* **x264 asm pinned to AVX2.** On AVX-512 CPUs, x264's AVX-512 code path (with mbtree + B-frames, at
  small sizes such as 160x120 or 320x240) reads uninitialised heap memory: the same frames encoded
  twice gave different bytes depending on what the process had allocated before (reproduced with
  MALLOC_PERTURB_; gone with asm=AVX2, mbtree=0 or bframes=0). AVX2 gives the same bytes as AVX-512
  where the latter is correct (checked at 640x480 and 1280x720) at about the same speed.
* **Exact timestamps.** time_base is 1/fps and pts is the frame index, so frame k is at k/fps and the
  container duration is frames/fps exactly (the mp4 timescale is fps*2^n, no rounding drift).
* **Atomic file.** We write `<path>.partial` and rename on close: a consumer (uploader) never sees a
  half-written MP4 at `path`. `movflags=+faststart` rewrites the file at close, so `path` must be a real
  file, not a file object.
"""
from __future__ import annotations

import functools
import os
import queue
import threading
import platform
import time
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from simreel.runtime import log
from simreel.contract.events import CRF_RANGE

from simreel.media.errors import CodecUnavailableError, WriterClosedError
from simreel.media.frames import Frame, as_rgb24
from simreel.media.info import VideoInfo, check_closable, finished

_log = log.get(__name__)

#: Video encoders this writer knows how to configure, best-supported first.
KNOWN_ENCODERS = ("libx264", "libsvtav1")

_X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast",
    "medium", "slow", "slower", "veryslow", "placebo",
)
# SVT-AV1 presets are integers (0 slowest .. 13 fastest); map the x264 names so callers need one vocabulary.
_SVT_PRESETS = {
    "ultrafast": 12, "superfast": 11, "veryfast": 10, "faster": 9, "fast": 8,
    "medium": 6, "slow": 4, "slower": 2, "veryslow": 1, "placebo": 0,
}
_CRF_RANGE = CRF_RANGE  # simreel.contract.events: one home for what each codec accepts

_SWS_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.BITEXACT
_BT709 = 1  # AVCOL_SPC/PRI/TRC_BT709
_TV_RANGE = 1  # AVCOL_RANGE_MPEG


@functools.cache
def x264_asm() -> str | None:
    """x264 `asm=` level that avoids the AVX-512 path (see module docstring), or None for auto.

    Only pinned when the CPU is known to support the AVX2 set: forcing flags the CPU lacks would
    crash with SIGILL, and without AVX2 there is no AVX-512 path to avoid anyway.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return None
    return "AVX2" if {"avx2", "fma", "bmi1", "bmi2", "abm"} <= set(flags) else None


def available_codecs() -> list[str]:
    """Video encoders usable by `Mp4Writer` in this process (the PyAV wheel decides, not the OS)."""
    out = []
    for name in KNOWN_ENCODERS:
        if name not in av.codecs_available:
            continue
        try:
            av.Codec(name, "w")
        except Exception:  # listed as a decoder only
            continue
        out.append(name)
    return out


class Mark(NamedTuple):
    """Start of an episode inside a multi-episode MP4: `start_s == frame / fps` exactly."""

    frame: int
    start_s: float
    label: str | None


def _even(n: int) -> int:
    return n + (n & 1)


class Mp4Writer:
    """Encode rgb24 frames to an MP4 as they arrive; `close()` returns a `VideoInfo`.

    One writer can span several episodes: call `mark(label)` before each episode's first frame to get
    its start time in the file (and a keyframe there, so players seek to it exactly).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        width: int,
        height: int,
        fps: int,
        crf: int = 23,
        preset: str = "veryfast",
        threads: int = 1,
        codec: str = "libx264",
        pipelined: bool = True,
    ) -> None:
        """`pipelined`: convert RGB→YUV in the caller's thread and encode in a second thread (PyAV
        releases the GIL), so two cores work like the ffmpeg CLI's; the bytes are the same either way."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"path must be a filesystem path (faststart rewrites the file at close), "
                f"not {type(path).__name__}"
            )
        for name, value in (("width", width), ("height", height), ("fps", fps), ("threads", threads)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        codecs = available_codecs()
        if codec not in codecs:
            raise CodecUnavailableError(
                f"video codec {codec!r} is not available in this PyAV build; available: {codecs}"
            )
        lo, hi = _CRF_RANGE[codec]
        if not isinstance(crf, int) or not lo <= crf <= hi:
            raise ValueError(f"crf for {codec} must be an int in [{lo}, {hi}], got {crf!r}")
        options = self._codec_options(codec, crf, preset, threads)

        self.path = Path(path)
        self.source_width, self.source_height = width, height
        self.width, self.height = _even(width), _even(height)
        self.fps, self.codec, self.threads = fps, codec, threads
        self._tb = Fraction(1, fps)
        self._frames = 0
        self._encode_s = 0.0
        self._marks: list[Mark] = []
        self._force_key = False
        self._info: VideoInfo | None = None
        self._aborted = False
        self._pad = (
            np.empty((self.height, self.width, 3), np.uint8)
            if (self.width, self.height) != (width, height)
            else None
        )
        self._rf = VideoReformatter()
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)

        self._container = av.open(
            str(self._tmp),
            "w",
            format="mp4",
            options={"movflags": "+faststart", "fflags": "+bitexact"},
        )
        try:
            stream = self._container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
            cc = stream.codec_context
            cc.time_base = self._tb
            cc.thread_count = threads
            cc.flags |= int(av.codec.context.Flags.bitexact)
            cc.colorspace = cc.color_primaries = cc.color_trc = _BT709
            cc.color_range = _TV_RANGE
            cc.options = options
            self._stream = stream
            self._encoder = _EncodeThread(self._container, stream) if pipelined else None
        except Exception:
            self._container.close()
            self._tmp.unlink(missing_ok=True)
            raise
        if self._pad is not None:
            _log.info(
                "media.mp4.padded",
                path=str(self.path),
                source=f"{width}x{height}",
                encoded=f"{self.width}x{self.height}",
                reason="yuv420p needs even dimensions; last row/column replicated",
            )

    @staticmethod
    def _codec_options(codec: str, crf: int, preset: str, threads: int) -> dict[str, str]:
        if codec == "libx264":
            if preset not in _X264_PRESETS:
                raise ValueError(f"preset must be one of {_X264_PRESETS}, got {preset!r}")
            # forced-idr: a frame we mark as I (episode start) becomes an IDR, a clean seek point.
            opts = {"crf": str(crf), "preset": preset, "forced-idr": "1"}
            if asm := x264_asm():
                opts["x264-params"] = f"asm={asm}"
            return opts
        # libsvtav1
        if preset in _SVT_PRESETS:
            svt_preset = _SVT_PRESETS[preset]
        elif str(preset).isdigit() and 0 <= int(preset) <= 13:
            svt_preset = int(preset)
        else:
            raise ValueError(
                f"preset for libsvtav1 must be 0..13 or one of {tuple(_SVT_PRESETS)}, got {preset!r}"
            )
        # SVT prints a banner per encoder to stderr unless told otherwise; keep logs structured.
        os.environ.setdefault("SVT_LOG", "1")
        # lp = level of parallelism: SVT ignores AVCodecContext.thread_count, so pin it here.
        return {"crf": str(crf), "preset": str(svt_preset), "svtav1-params": f"lp={threads}"}

    # -- episode bookkeeping -------------------------------------------------------------------
    @property
    def frames(self) -> int:
        """Frames written so far == index of the next frame."""
        return self._frames

    @property
    def marks(self) -> tuple[Mark, ...]:
        return tuple(self._marks)

    def time_of(self, frame_index: int) -> float:
        """Presentation time of a frame in this file (exact: pts == index, time_base == 1/fps)."""
        return frame_index / self.fps

    def mark(self, label: str | None = None, *, keyframe: bool = True) -> Mark:
        """Record that the next frame starts a new episode; returns its `Mark` (start time in file)."""
        m = Mark(self._frames, self.time_of(self._frames), label)
        self._marks.append(m)
        self._force_key = self._force_key or keyframe
        return m

    # -- encoding ------------------------------------------------------------------------------
    def write(self, frame: Frame) -> None:
        """Encode one HxWx3 rgb24 frame (bytes, memoryview or uint8 ndarray of the source size)."""
        if self._info is not None or self._aborted:
            raise WriterClosedError(f"write() on a closed Mp4Writer ({self.path})")
        t0 = time.perf_counter()
        arr = as_rgb24(frame, self.source_width, self.source_height)
        if self._pad is not None:
            arr = self._padded(arr)
        elif arr.strides[1:] != (3, 1):
            arr = np.ascontiguousarray(arr)
        rgb = av.VideoFrame.from_numpy_buffer(arr, format="rgb24")
        yuv = self._rf.reformat(
            rgb,
            format="yuv420p",
            dst_colorspace=_BT709,
            dst_color_range=_TV_RANGE,
            interpolation=_SWS_FLAGS,
            threads=1,
        )
        yuv.pts = self._frames
        yuv.time_base = self._tb
        yuv.duration = 1
        if self._force_key:
            yuv.pict_type = av.video.frame.PictureType.I
            self._force_key = False
        if self._encoder is not None:
            self._encoder.put(yuv)
        else:
            self._container.mux(self._stream.encode(yuv))
        self._frames += 1
        self._encode_s += time.perf_counter() - t0

    def _padded(self, arr: np.ndarray) -> np.ndarray:
        h, w = self.source_height, self.source_width
        pad = self._pad
        pad[:h, :w] = arr
        if self.width > w:
            pad[:h, w:] = arr[:, w - 1 : w]
        if self.height > h:
            pad[h:] = pad[h - 1 : h]
        return pad

    def close(self) -> VideoInfo:
        """Flush the encoder, finalize (faststart), rename into place; idempotent."""
        if self._info is not None:
            return self._info
        check_closable(self, self.path, aborted=self._aborted, frames=self._frames, abort=self.abort)
        t0 = time.perf_counter()
        try:
            if self._encoder is not None:
                self._encoder.finish()
            self._container.mux(self._stream.encode(None))
            self._container.close()
        except Exception:
            self.abort()
            raise
        os.replace(self._tmp, self.path)
        self._encode_s += time.perf_counter() - t0
        self._info = finished(self.path, kind="mp4", frames=self._frames, fps=self.fps, width=self.width,
                              height=self.height, codec=self.codec, encode_s=self._encode_s)
        return self._info

    def abort(self) -> None:
        """Drop the partial file (on error); safe to call more than once."""
        if self._aborted or self._info is not None:
            return
        self._aborted = True
        if getattr(self, "_encoder", None) is not None:
            self._encoder.stop()
        try:
            self._container.close()
        except Exception as e:  # the container may be half-initialised; the file goes anyway
            _log.debug("media.mp4.abort_close_failed", path=str(self.path), error=repr(e))
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _EncodeThread:
    """Encodes and muxes converted frames in order, in its own thread, a few frames behind the caller."""

    _STOP = object()

    def __init__(self, container, stream, depth: int = 4) -> None:
        self._container, self._stream = container, stream
        self._q: queue.Queue = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="simreel-encode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            frame = self._q.get()
            if frame is self._STOP:
                return
            if self._error is not None:
                continue  # keep draining so put() never blocks forever
            try:
                self._container.mux(self._stream.encode(frame))
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = e

    def put(self, frame) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(frame)

    def finish(self) -> None:
        """Wait until every queued frame is encoded; re-raise an encoding error here."""
        self.stop()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._thread.is_alive():
            self._q.put(self._STOP)
            self._thread.join()

