"""Side-by-side tiling for multi-camera videos: one MP4 with every camera, in the given order."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simreel.media.errors import FrameFormatError


def tile(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate HxWix3 uint8 frames left to right; all heights must match (widths may differ).

    Heights are not silently resized: a mismatch means the cameras were rendered at different sizes,
    which the caller should fix at the renderer rather than have us blur.
    """
    if not frames:
        raise ValueError("tile() needs at least one frame")
    first = frames[0]
    for i, f in enumerate(frames):
        if not isinstance(f, np.ndarray) or f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            desc = f"{f.dtype} {f.shape}" if isinstance(f, np.ndarray) else type(f).__name__
            raise FrameFormatError(f"frame {i} must be an HxWx3 uint8 array, got {desc}")
        if f.shape[0] != first.shape[0]:
            raise FrameFormatError(
                f"frame {i} has height {f.shape[0]}, frame 0 has {first.shape[0]}: "
                "render every camera at the same height"
            )
    if len(frames) == 1:
        return first
    return np.concatenate(frames, axis=1)
