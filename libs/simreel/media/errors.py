"""Media errors: one base class so callers (the encoder service) can map every media failure to a
failed-artifact event without catching bare Exception."""
from __future__ import annotations


class MediaError(Exception):
    """Base class for every error raised by `simreel.media`."""


class FrameFormatError(MediaError, ValueError):
    """A frame is not HxWx3 uint8 RGB of the size the writer was opened with."""


class NoFramesError(MediaError, ValueError):
    """A writer was closed (or a file converted) without a single frame: there is no video to keep."""


class CodecUnavailableError(MediaError, RuntimeError):
    """The requested encoder is not compiled into the bundled FFmpeg."""


class WriterClosedError(MediaError, RuntimeError):
    """`write()` after `close()`/`abort()`: almost always a lifecycle bug in the caller."""


class BlankVideoError(MediaError):
    """Raised by `FrameStats.raise_for_problems()` when nothing was drawn (every frame a uniform fill) or the frames are frozen."""
