"""PngZipWriter: one zip of numbered PNGs, lossless and deterministic."""
from __future__ import annotations

import io
import zipfile

import av
import numpy as np
import pytest

from simreel.media import NoFramesError, PngZipWriter
from simreel.media.synthetic import moving_pattern


def write_zip(path, n, w=161, h=119):
    with PngZipWriter(path, width=w, height=h, fps=30) as z:
        for i in range(n):
            z.write(moving_pattern(i, w, h) if i % 2 else moving_pattern(i, w, h).tobytes())
    return z.close()


def decode_png(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data), format="png_pipe") as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def test_zip_has_one_png_per_frame_and_is_lossless(tmp_path):
    info = write_zip(tmp_path / "f.zip", 5)
    assert (info.frames, info.codec, info.width, info.height) == (5, "png", 161, 119)
    assert info.duration_s == pytest.approx(5 / 30)
    with zipfile.ZipFile(info.path) as z:
        names = z.namelist()
        assert names == [f"frame_{i:06d}.png" for i in range(5)]
        assert z.testzip() is None
        first = z.read(names[0])
        last = z.read(names[-1])
    assert first.startswith(b"\x89PNG\r\n\x1a\n")
    assert np.array_equal(decode_png(first), moving_pattern(0, 161, 119))
    assert np.array_equal(decode_png(last), moving_pattern(4, 161, 119))


def test_zip_bytes_are_deterministic(tmp_path):
    a = write_zip(tmp_path / "a.zip", 3)
    b = write_zip(tmp_path / "b.zip", 3)
    assert a.sha256 == b.sha256
    with zipfile.ZipFile(a.path) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_empty_zip_is_an_error(tmp_path):
    z = PngZipWriter(tmp_path / "e.zip", width=8, height=8)
    with pytest.raises(NoFramesError):
        z.close()
    assert not (tmp_path / "e.zip").exists() and not (tmp_path / "e.zip.partial").exists()
