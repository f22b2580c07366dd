"""Colour for the depth and segmentation previews, without matplotlib.

Depth uses viridis: perceptually uniform (equal steps in depth look like equal steps in colour, and
lightness rises monotonically, so the preview also reads in grey) and readable with the common colour
vision deficiencies. The table is the published degree-6 polynomial fit of matplotlib's viridis
(its ends within a few levels of
the original's), evaluated once at 256 levels. Near is dark, far is bright; beyond the run's
range clamps to the ends, and what the stored format cannot hold (65535) is black.
"""
from __future__ import annotations

import numpy as np

from simreel.contract import streams

__all__ = ["VIRIDIS", "depth_rgb", "segmentation_rgb"]

_VIRIDIS_COEFFS = np.array([
    [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
    [0.1050930431085774, 1.404613529898575, 1.384590162594685],
    [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
    [-4.634230498983486, -5.799100973351585, -19.33244095627987],
    [6.228269936347081, 14.17993336680509, 56.69055260068105],
    [4.776384997670288, -13.74514537774601, -65.35303263337234],
    [-5.435455855934631, 4.645852612178535, 26.3124352495832],
])


def _viridis_table() -> np.ndarray:
    t = np.linspace(0.0, 1.0, 256)[:, None]
    rgb = np.zeros((256, 3))
    for c in _VIRIDIS_COEFFS[::-1]:  # Horner
        rgb = rgb * t + c
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


VIRIDIS = _viridis_table()


class DepthColours:
    """Stored depth (uint16 at streams.DEPTH_SCALE_M) → viridis rgb24 over a fixed range in metres."""

    def __init__(self, near_m: float, far_m: float) -> None:
        if not far_m > near_m:
            raise ValueError(f"depth preview range needs far > near, got {near_m}..{far_m}")
        q = np.arange(streams.DEPTH_MAX + 1, dtype=np.float64) * streams.DEPTH_SCALE_M
        level = np.clip(np.rint((q - near_m) / (far_m - near_m) * 255), 0, 255).astype(np.intp)
        self.lut = VIRIDIS[level]
        self.lut[streams.DEPTH_MAX] = 0

    def __call__(self, depth: np.ndarray) -> np.ndarray:
        return self.lut[depth]


def depth_rgb(depth: np.ndarray, near_m: float, far_m: float) -> np.ndarray:
    return DepthColours(near_m, far_m)(depth)


def segmentation_rgb(packed: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """bgra-packed ids (streams.pack_segmentation) → rgb24 through `lut` (streams.id_colours)."""
    ids = packed[..., 0].astype(np.intp) | (packed[..., 1].astype(np.intp) << 8)
    ids = np.minimum(ids, lut.shape[1] - 1)
    return lut[packed[..., 2], ids]
