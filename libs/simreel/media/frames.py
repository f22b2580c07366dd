"""Frame normalisation shared by the writers.

Frames arrive from NATS as raw rgb24 bytes or from the simulator as numpy arrays; both become an
HxWx3 uint8 view *without copying* where possible, because at 640x480x30 fps a needless copy per
frame is measurable.
"""
from __future__ import annotations

import numpy as np

from simreel.media.errors import FrameFormatError

Frame = bytes | bytearray | memoryview | np.ndarray


def as_rgb24(frame: Frame, width: int, height: int) -> np.ndarray:
    """Return `frame` as an (height, width, 3) uint8 array, or raise FrameFormatError saying why not."""
    if isinstance(frame, np.ndarray):
        arr = frame
        if arr.dtype != np.uint8:
            raise FrameFormatError(
                f"frame dtype is {arr.dtype}, expected uint8 rgb24 (convert with "
                "(np.clip(x, 0, 1) * 255).astype(np.uint8) for float images)"
            )
        if arr.shape != (height, width, 3):
            raise FrameFormatError(
                f"frame shape is {arr.shape}, expected ({height}, {width}, 3) rgb24"
            )
        return arr
    if isinstance(frame, (bytes, bytearray, memoryview)):
        try:
            buf = memoryview(frame).cast("B")
        except TypeError as e:  # non-contiguous memoryview
            raise FrameFormatError(f"frame memoryview is not contiguous: {e}") from None
        expected = width * height * 3
        if len(buf) != expected:
            raise FrameFormatError(
                f"frame has {len(buf)} bytes, expected {expected} = {width}x{height}x3 rgb24"
            )
        return np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)
    raise FrameFormatError(
        f"frame must be bytes, bytearray, memoryview or numpy.ndarray, not {type(frame).__name__}"
    )
