"""The recorder's frame buffers: copies are exact, buffers come round again, memory stays bounded."""
from __future__ import annotations

import numpy as np
import pytest

from simreel.recorder.pool import FramePool


def _frame(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_a_copy_is_the_frame_and_independent_of_it():
    pool = FramePool()
    f = _frame(1)
    buf = pool.copy(f)
    assert bytes(buf) == f.tobytes()
    f[:] = 0  # the env reuses its array: the queued copy must not change
    assert bytes(buf) == _frame(1).tobytes()


def test_given_back_buffers_are_reused_and_at_most_keep_are_kept():
    pool = FramePool(keep=2)
    a, b, c = pool.copy(_frame(1)), pool.copy(_frame(2)), pool.copy(_frame(3))
    for buf in (a, b, c):
        pool.give(buf)
    again = [pool.copy(_frame(4)), pool.copy(_frame(5)), pool.copy(_frame(6))]
    assert sum(any(x is y for y in (a, b, c)) for x in again) == 2  # the third is new
    assert bytes(again[0]) == _frame(4).tobytes()


def test_a_new_frame_size_drops_the_old_buffers():
    pool = FramePool()
    small = pool.copy(_frame(1, 8, 8))
    pool.give(small)
    big = pool.copy(_frame(2))
    assert big is not small and len(big) == 48 * 64 * 3
    pool.give(small)  # a stale size is not kept
    assert pool.copy(_frame(3)) is not small


def test_only_uint8_frames():
    with pytest.raises(ValueError, match="uint8"):
        FramePool().copy(np.zeros((4, 4, 3), np.int64))
