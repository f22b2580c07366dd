"""FrameStats (blank/frozen), tile() and probe() edge cases."""
from __future__ import annotations

import numpy as np
import pytest

from simreel.media import BlankVideoError, FrameFormatError, FrameStats, MediaError, probe, tile
from simreel.media.synthetic import moving_pattern

W, H = 32, 24


def feed(frames):
    s = FrameStats(W, H)
    for f in frames:
        s.update(f)
    return s


def test_moving_video_has_no_warnings():
    s = feed(moving_pattern(i, W, H) for i in range(10))
    assert not s.black and not s.frozen and s.warnings() == []
    s.raise_for_problems()


def test_uniform_fills_are_blank_and_the_message_claims_no_cause():
    for fill in ((0, 0, 0), (1, 2, 0), (200, 30, 90)):  # black, black within tolerance, a coloured clear colour
        s = feed(np.full((H, W, 3), fill, np.uint8) for _ in range(3))
        assert s.blank and s.black
        (msg,) = s.warnings()  # frozen too, but "nothing was drawn" says it all
        assert f"all 3 frames are a uniform fill (rgb({fill[0]}, {fill[1]}, {fill[2]}))" in msg
        assert "nothing was drawn" in msg and "MUJOCO_GL" not in msg
        with pytest.raises(BlankVideoError, match="nothing was drawn"):
            s.raise_for_problems()


def test_a_dark_frame_with_anything_drawn_is_not_blank():
    frame = np.zeros((H, W, 3), np.uint8)
    frame[5:20, 17] = (133, 90, 40)  # a thin bright pole on black: mean pixel ~1, one column wide
    s = feed([frame, frame.copy()] + [np.roll(frame, i, axis=1) for i in range(1, 4)])
    assert not s.blank and s.warnings() == []
    noise = np.random.default_rng(0).integers(0, 6, (H, W, 3), dtype=np.uint8)  # dark, but not uniform
    assert not feed([noise]).blank
    one_pixel = np.zeros((H, W, 3), np.uint8)
    one_pixel[H - 1, W - 1] = (0, 0, 9)
    assert not feed([one_pixel]).blank


def test_frozen_video_is_detected_bytes_input_too():
    frame = moving_pattern(3, W, H)
    s = feed([frame.tobytes()] * 5)
    assert s.frozen and not s.black
    assert "all 5 frames are identical" in s.warnings()[0]


def test_black_and_frozen_together_and_one_drawn_frame_clears_blank():
    black = np.zeros((H, W, 3), np.uint8)
    s = feed([black] * 4)
    assert s.blank and s.frozen and len(s.warnings()) == 1
    s = feed([black] * 4 + [moving_pattern(0, W, H)])
    assert not s.blank and not s.frozen


def test_empty_and_single_frame():
    assert "no frames" in FrameStats(W, H).warnings()[0]
    s = feed([moving_pattern(0, W, H)])
    assert not s.frozen  # one frame cannot be "frozen"


def test_tile_side_by_side():
    a, b = moving_pattern(0, 20, 10), moving_pattern(1, 30, 10)
    t = tile([a, b])
    assert t.shape == (10, 50, 3)
    assert np.array_equal(t[:, :20], a) and np.array_equal(t[:, 20:], b)
    with pytest.raises(FrameFormatError, match="height"):
        tile([a, moving_pattern(0, 20, 12)])
    with pytest.raises(ValueError):
        tile([])


def test_probe_missing_or_garbage_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "nope.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(MediaError, match="not a readable video"):
        probe(tmp_path / "junk.mp4")
