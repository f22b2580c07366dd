"""mp4_to_gif on real files: frame count follows duration x gif fps, bytes are deterministic."""
from __future__ import annotations

import pytest

from simreel.media import MediaError, Mp4Writer, mp4_to_gif, probe
from simreel.media.synthetic import moving_pattern

W, H = 160, 120


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("gif") / "src.mp4"
    with Mp4Writer(path, width=W, height=H, fps=30) as w:
        for i in range(45):  # 1.5 s
            w.write(moving_pattern(i, W, H))
    return path


def test_frame_count_is_duration_times_gif_fps(mp4, tmp_path):
    info = mp4_to_gif(mp4, tmp_path / "a.gif")  # default 15 fps
    assert info.codec == "gif" and info.fps == 15
    assert abs(info.frames - 1.5 * 15) <= 1
    assert (info.width, info.height) == (W, H)
    p = probe(info.path)
    assert p["frames"] == info.frames and p["format"] == "gif"
    assert p["duration_s"] == pytest.approx(1.5, abs=0.1)
    assert info.bytes == (tmp_path / "a.gif").stat().st_size


def test_width_and_fps_options(mp4, tmp_path):
    info = mp4_to_gif(mp4, tmp_path / "small.gif", fps=10, width=80)
    assert abs(info.frames - 15) <= 1
    assert (info.width, info.height) == (80, 60)
    p = probe(info.path)
    assert (p["width"], p["height"], p["frames"]) == (80, 60, info.frames)


@pytest.mark.parametrize("dither", ["bayer", "none"])
def test_other_dithers(mp4, tmp_path, dither):
    info = mp4_to_gif(mp4, tmp_path / f"{dither}.gif", dither=dither, width=80)
    assert abs(info.frames - 22.5) <= 1 and probe(info.path)["frames"] == info.frames


def test_gif_bytes_are_deterministic(mp4, tmp_path):
    a = mp4_to_gif(mp4, tmp_path / "a.gif")
    b = mp4_to_gif(mp4, tmp_path / "b.gif")
    assert a.sha256 == b.sha256
    assert (tmp_path / "a.gif").read_bytes() == (tmp_path / "b.gif").read_bytes()


def test_errors(mp4, tmp_path):
    with pytest.raises(FileNotFoundError):
        mp4_to_gif(tmp_path / "missing.mp4", tmp_path / "x.gif")
    with pytest.raises(ValueError, match="fps"):
        mp4_to_gif(mp4, tmp_path / "x.gif", fps=60)
    with pytest.raises(ValueError, match="width"):
        mp4_to_gif(mp4, tmp_path / "x.gif", width=1)
    with pytest.raises(ValueError, match="palette_bits"):
        mp4_to_gif(mp4, tmp_path / "x.gif", palette_bits=9)
    with pytest.raises(ValueError, match="dither"):
        mp4_to_gif(mp4, tmp_path / "x.gif", dither="floyd")
    assert not (tmp_path / "x.gif").exists()


def test_gif_of_video_shorter_than_one_gif_frame(tmp_path):
    # One frame at 30 fps (33 ms) still yields a one-frame GIF, not an empty file.
    with Mp4Writer(tmp_path / "one.mp4", width=W, height=H, fps=30) as w:
        w.write(moving_pattern(0, W, H))
    info = mp4_to_gif(tmp_path / "one.mp4", tmp_path / "one.gif")
    assert info.frames == 1
    assert probe(info.path)["frames"] == 1


def test_empty_input_is_an_error(tmp_path):
    bogus = tmp_path / "empty.mp4"
    bogus.write_bytes(b"")
    with pytest.raises(MediaError, match="not a readable video"):
        mp4_to_gif(bogus, tmp_path / "e.gif")
    assert not (tmp_path / "e.gif").exists() and not (tmp_path / "e.gif.partial").exists()
