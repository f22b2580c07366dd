"""`probe()`: what a file really contains, read back with the same FFmpeg that wrote it.

Frames are *counted by decoding*, not read from the container header: `nb_frames` is absent in GIF
and can be wrong after a bad mux, and tests/assertions must check what a viewer will actually see.
Decoding is streaming, so probing a 10-minute file costs time, not memory.
"""
from __future__ import annotations

import os
from pathlib import Path

from simreel.media.errors import MediaError


def open_video(src: Path):
    """(container, first video stream) of a file, with clear errors for a missing or unreadable one."""
    import av  # here, not at import: `simreel.media`'s light names must not load FFmpeg
    if not src.is_file():
        raise FileNotFoundError(f"no such video file: {src}")
    try:
        inp = av.open(str(src))
    except av.error.FFmpegError as e:
        raise MediaError(f"{src} is not a readable video: {e}") from e
    if not inp.streams.video:
        inp.close()
        raise MediaError(f"{src} has no video stream")
    vs = inp.streams.video[0]
    vs.thread_count = 1  # decoder threads would only contend with the encoder service's x264
    return inp, vs


def probe(path: str | os.PathLike) -> dict:
    """Return {frames, duration_s, width, height, codec, fps, format} for the first video stream.

    duration_s is the container duration (what players show); fps is the stream's average rate
    (float; GIFs with centisecond delays are not integral).
    """
    import av
    c, vs = open_video(Path(path))
    with c:
        frames = 0
        for _ in c.decode(vs):
            frames += 1
        if c.duration is not None:
            duration = c.duration / av.time_base
        elif vs.duration is not None and vs.time_base is not None:
            duration = float(vs.duration * vs.time_base)
        else:
            duration = 0.0
        rate = vs.average_rate or vs.guessed_rate
        return {
            "frames": frames,
            "duration_s": duration,
            "width": vs.codec_context.width,
            "height": vs.codec_context.height,
            "codec": vs.codec_context.name,
            "fps": float(rate) if rate else 0.0,
            "format": c.format.name,
        }
