"""Blank/frozen detection, fed frame by frame next to the encoder.

The classic failure of headless MuJoCo is a video that *encodes fine* but shows nothing: no GL
context (all black) or a renderer that never updates (every frame identical). Both are cheap to
detect on the fly in constant memory: a running count of dark frames and one digest to compare with.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .errors import BlankVideoError
from .frames import Frame, as_rgb24

#: A frame whose mean pixel value (0..255 over all channels) is below this is "near-black".
BLACK_MEAN = 8.0

_GL_REMEDY = (
    "the GL backend may not be rendering; try MUJOCO_GL=egl (GPU) or MUJOCO_GL=osmesa (CPU)"
)


class FrameStats:
    """Running blank/frozen statistics for one episode (or one video)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.frames = 0
        self.dark_frames = 0
        self.max_mean = 0.0
        self._first_digest: bytes | None = None
        self._all_same = True
        self._npix = width * height * 3

    def update(self, frame: Frame) -> None:
        arr = as_rgb24(frame, self.width, self.height)
        # Every 4th row and column: a near-black frame is near-black everywhere, and this runs once
        # per frame on the render loop's thread (0.13 ms instead of 0.3 ms at 640x480).
        sample = arr[::4, ::4]
        mean = float(sample.sum(dtype=np.uint64)) / sample.size
        if mean < BLACK_MEAN:
            self.dark_frames += 1
        self.max_mean = max(self.max_mean, mean)
        if self._all_same:
            buf = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
            digest = hashlib.blake2b(buf.data, digest_size=16).digest()
            if self._first_digest is None:
                self._first_digest = digest
            elif digest != self._first_digest:
                self._all_same = False  # one difference is enough: stop hashing
        self.frames += 1

    @property
    def black(self) -> bool:
        """Every frame is near-black (and there is at least one)."""
        return self.frames > 0 and self.dark_frames == self.frames

    @property
    def frozen(self) -> bool:
        """Every frame is byte-identical to the first (needs >= 2 frames to mean anything)."""
        return self.frames >= 2 and self._all_same

    def warnings(self) -> list[str]:
        out = []
        if self.frames == 0:
            return ["no frames were rendered: the simulator produced an empty episode"]
        if self.black:
            out.append(
                f"all {self.frames} frames are near-black (max mean pixel {self.max_mean:.1f} < "
                f"{BLACK_MEAN:g}): {_GL_REMEDY}"
            )
        if self.frozen:
            out.append(
                f"all {self.frames} frames are identical (frozen video): the camera or scene never "
                f"changed; check the camera name/pose and that rendering follows mj_step, or "
                f"{_GL_REMEDY}"
            )
        return out

    def raise_for_problems(self) -> None:
        """For `fail_on_blank`-style requests: turn the warnings into an error with the remedy."""
        problems = self.warnings()
        if problems:
            raise BlankVideoError("; ".join(problems))
