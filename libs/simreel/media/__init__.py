"""simreel.media: frames in, MP4/GIF/PNG-zip out, in constant memory and with deterministic bytes.

The encoder service feeds raw rgb24 frames to `Mp4Writer` (and optionally `PngZipWriter` and
`FrameStats`) as they arrive from NATS, then derives the GIF from the finished MP4 with `mp4_to_gif`.

The writers are imported on first use (PEP 562) and probe imports PyAV when called: a recorder in a
training process needs only `media.stats`, and importing the package must not load PyAV and its
FFmpeg libraries there (~+20 MB of resident memory in a process that never encodes).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from simreel.media.errors import (BlankVideoError, CodecUnavailableError, FrameFormatError, MediaError, NoFramesError,
                     WriterClosedError)
from simreel.media.info import VideoInfo
from simreel.media.probe import probe
from simreel.media.stats import FrameStats
from simreel.media.tile import tile

# The writers load PyAV at import: imported on first use.
_LAZY = {"mp4_to_gif": "gif", "Mark": "mp4", "Mp4Writer": "mp4", "available_codecs": "mp4", "PngZipWriter": "png"}

__all__ = [
    "BlankVideoError",
    "CodecUnavailableError",
    "FrameFormatError",
    "FrameStats",
    "Mark",
    "MediaError",
    "Mp4Writer",
    "NoFramesError",
    "PngZipWriter",
    "VideoInfo",
    "WriterClosedError",
    "available_codecs",
    "mp4_to_gif",
    "probe",
    "tile",
]


def __getattr__(name: str) -> Any:
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


if TYPE_CHECKING:  # what type checkers and editors see
    from simreel.media.gif import mp4_to_gif
    from simreel.media.mp4 import Mark, Mp4Writer, available_codecs
    from simreel.media.png import PngZipWriter
