"""simreel.media: frames in, MP4/GIF/PNG-zip out, in constant memory and with deterministic bytes.

The encoder service feeds raw rgb24 frames to `Mp4Writer` (and optionally `PngZipWriter` and
`FrameStats`) as they arrive from NATS, then derives the GIF from the finished MP4 with `mp4_to_gif`.
"""
from .errors import (
    BlankVideoError,
    CodecUnavailableError,
    FrameFormatError,
    MediaError,
    NoFramesError,
    WriterClosedError,
)
from .gif import mp4_to_gif
from .info import VideoInfo
from .mp4 import Mark, Mp4Writer, available_codecs
from .png import PngZipWriter
from .probe import probe
from .stats import FrameStats
from .tile import tile

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
