"""Blank/frozen detection, fed frame by frame next to the encoder.

The classic failure of headless MuJoCo is a video that *encodes fine* but shows nothing: nothing drawn
(every pixel the clear colour) or a renderer that never updates (every frame identical). Both are
cheap to detect on the fly in constant memory.

"Blank" means nothing in the frame differs from a uniform fill, not "dark": Gymnasium's
InvertedPendulum draws a bright pole on a black background (mean pixel 2.4, max 133), and a mean
threshold flagged every one of its episodes. One pixel that differs is a drawing. The messages say what
was observed and never claim a cause the frames cannot show (a uniform frame can be a camera inside a
body as well as a GL context that does not render).
"""
from __future__ import annotations

import hashlib

import numpy as np

from simreel.media.errors import BlankVideoError
from simreel.media.frames import Frame, as_rgb24

#: A frame whose bytes all lie within this many levels of each other is a uniform fill (a grey or
#: black clear colour with a little noise). A coloured fill must be exact.
UNIFORM_TOLERANCE = 2


def uniform_fill(arr: np.ndarray) -> tuple[int, int, int] | None:
    """The fill colour when nothing in an HxWx3 frame differs from a uniform fill, else None.

    Two checks of the whole frame, about 0.1 ms at 640x480 (every pixel counts: a thin pole can fall
    between the rows and columns of any sample): the spread of all bytes (a grey fill, with
    tolerance), then every pixel against the one before it (a coloured fill, exact)."""
    flat = arr.reshape(-1)
    lo, hi = int(flat.min()), int(flat.max())
    if hi - lo > UNIFORM_TOLERANCE and not np.array_equal(flat[3:], flat[:-3]):
        return None
    r, g, b = (int(v) for v in arr.reshape(-1, 3)[0])
    return r, g, b


class FrameStats:
    """Running blank/frozen statistics for one episode (or one video)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.frames = 0
        self._all_blank = True
        self._fills: set[tuple[int, int, int]] = set()
        self._first_digest: bytes | None = None
        self._all_same = True

    def update(self, frame: Frame) -> None:
        arr = as_rgb24(frame, self.width, self.height)
        if self._all_blank:  # one frame with a drawing settles it: no more checks
            fill = uniform_fill(arr)
            if fill is None:
                self._all_blank = False
            elif len(self._fills) < 4:
                self._fills.add(fill)
        if self._all_same:
            buf = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
            digest = hashlib.blake2b(buf.data, digest_size=16).digest()
            if self._first_digest is None:
                self._first_digest = digest
            elif digest != self._first_digest:
                self._all_same = False  # one difference is enough: stop hashing
        self.frames += 1

    @property
    def blank(self) -> bool:
        """Every frame is a uniform fill: nothing was drawn (and there is at least one frame)."""
        return self.frames > 0 and self._all_blank

    @property
    def black(self) -> bool:
        """The name callers used when blank meant dark; the same as `blank`."""
        return self.blank

    @property
    def frozen(self) -> bool:
        """Every frame is byte-identical to the first (needs >= 2 frames to mean anything)."""
        return self.frames >= 2 and self._all_same

    def warnings(self) -> list[str]:
        out = []
        if self.frames == 0:
            return ["no frames were rendered: the simulator produced an empty episode"]
        if self.blank:
            fills = " / ".join(f"rgb{c}" for c in sorted(self._fills))
            out.append(
                f"all {self.frames} frames are a uniform fill ({fills}): nothing was drawn; check that the "
                f"camera sees the scene and that it is lit, and that the renderer draws at all"
            )
        if self.frozen and not self.blank:
            out.append(
                f"all {self.frames} frames are identical (frozen video): the camera or the scene never "
                f"changed; check the camera and that rendering follows the simulation"
            )
        return out

    def raise_for_problems(self) -> None:
        """For `fail_on_blank`-style requests: turn the warnings into an error."""
        problems = self.warnings()
        if problems:
            raise BlankVideoError("; ".join(problems))
