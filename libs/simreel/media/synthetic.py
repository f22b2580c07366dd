"""Deterministic moving test frames for tests, benchmarks and smoke checks.

Constant frames would flatter the encoder (x264 skips them almost for free) and random noise would
punish it far beyond any rendered scene, so the pattern imitates a MuJoCo view: a sky gradient, a
scrolling checker floor, a shaded bouncing box and a sweeping bar. Frame i is a pure function of i.
"""
from __future__ import annotations

import numpy as np


def moving_pattern(index: int, width: int, height: int) -> np.ndarray:
    """Frame `index` of the pattern as an (height, width, 3) uint8 array."""
    y = np.arange(height, dtype=np.int32)[:, None]
    x = np.arange(width, dtype=np.int32)[None, :]
    frame = np.empty((height, width, 3), np.uint8)
    horizon = height // 3
    # sky: vertical gradient, slowly drifting hue
    sky = y[:horizon] * 160 // max(1, horizon)
    frame[:horizon, :, 0] = (40 + sky // 2 + index % 32)
    frame[:horizon, :, 1] = (80 + sky // 2)
    frame[:horizon, :, 2] = (200 - sky // 4)
    # floor: checkerboard scrolling left, shaded with distance from the horizon
    cell = max(2, width // 16)
    check = (((x + 2 * index) // cell + (y[horizon:] // cell)) & 1).astype(np.int32)
    shade = 110 + (y[horizon:] - horizon) * 90 // max(1, height - horizon)
    floor = np.minimum(check * 55 + shade, 255)
    frame[horizon:, :, 0] = floor
    frame[horizon:, :, 1] = floor
    frame[horizon:, :, 2] = (floor * 3 // 4)
    # box: bounces vertically, moves right, shaded left-to-right
    side = max(2, min(width, height) // 5)
    period = 2 * max(1, height - side)
    top = index * 3 % period
    top = top if top < period // 2 else period - top
    left = (index * 2) % max(1, width - side)
    ramp = np.linspace(255, 120, side, dtype=np.float32).astype(np.uint8)[None, :]
    box = frame[top : top + side, left : left + side]
    box[..., 0] = ramp[:, : box.shape[1]]
    box[..., 1] = ramp[:, : box.shape[1]] // 4
    box[..., 2] = 30
    # bar: one bright column sweeping across
    bar = (index * 4) % width
    frame[:, bar : bar + max(1, width // 80)] = 255
    return frame
