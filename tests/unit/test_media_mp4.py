"""Mp4Writer against real files decoded with PyAV (no mocks): counts, timing, determinism, padding."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from simreel.media import (
    CodecUnavailableError,
    FrameFormatError,
    Mp4Writer,
    NoFramesError,
    WriterClosedError,
    available_codecs,
    probe,
)
from simreel.media.synthetic import moving_pattern

W, H, FPS = 160, 120, 30


def encode(path, n=45, *, width=W, height=H, fps=FPS, offset=0, **kw):
    with Mp4Writer(path, width=width, height=height, fps=fps, **kw) as w:
        for i in range(n):
            w.write(moving_pattern(i + offset, width, height))
    return w.close()  # idempotent: returns the info computed at __exit__


def top_level_atoms(path) -> list[bytes]:
    atoms, data = [], path.read_bytes()
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        atoms.append(kind)
        pos += size
    return atoms


def test_frame_count_and_duration_are_exact(tmp_path):
    info = encode(tmp_path / "a.mp4", 45)
    assert (info.frames, info.fps, info.duration_s) == (45, 30, 1.5)
    assert (info.width, info.height, info.codec) == (W, H, "libx264")
    assert info.bytes > 1024 and info.bytes == (tmp_path / "a.mp4").stat().st_size
    assert len(info.sha256) == 64 and info.encode_ms > 0
    p = probe(tmp_path / "a.mp4")
    assert p["frames"] == 45
    assert p["duration_s"] == pytest.approx(1.5, abs=1e-6)
    assert (p["width"], p["height"], p["codec"], p["fps"]) == (W, H, "h264", 30.0)
    assert "mp4" in p["format"]
    assert not (tmp_path / "a.mp4.partial").exists()


def test_timestamps_are_frame_index_over_fps(tmp_path):
    encode(tmp_path / "a.mp4", 10)
    with av.open(str(tmp_path / "a.mp4")) as c:
        times = [f.time for f in c.decode(video=0)]
    assert times == pytest.approx([i / FPS for i in range(10)], abs=1e-9)


def test_ten_minutes_at_30fps_has_no_drift(tmp_path):
    # Repeated tiny frames keep this fast (x264 skips them); timing is what is under test.
    frames = [np.full((16, 16, 3), 16 * k, np.uint8) for k in range(16)]
    with Mp4Writer(tmp_path / "long.mp4", width=16, height=16, fps=30, preset="ultrafast") as w:
        for i in range(18000):
            w.write(frames[i % 16])
    assert w.close().duration_s == 600.0
    with av.open(str(tmp_path / "long.mp4")) as c:
        s = c.streams.video[0]
        assert c.duration == 600 * av.time_base
        last = None
        for last in c.decode(s):
            pass
        assert last.pts * s.time_base == Fraction(17999, 30)


def test_same_frames_same_bytes_different_frames_different(tmp_path):
    a = encode(tmp_path / "a.mp4")
    b = encode(tmp_path / "b.mp4")
    c = encode(tmp_path / "c.mp4", offset=1)
    assert a.sha256 == b.sha256
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert c.sha256 != a.sha256


_CHILD = """
import sys
from simreel.runtime import log; log.setup("warning")
from simreel.media import Mp4Writer
from simreel.media.synthetic import moving_pattern
with Mp4Writer(sys.argv[1], width=160, height=120, fps=30) as w:
    for i in range(30):
        w.write(moving_pattern(i, 160, 120))
print(w.close().sha256)
"""


def test_bytes_do_not_depend_on_heap_garbage(tmp_path):
    """Regression: x264's AVX-512 path read uninitialised memory at small sizes, so the same frames
    gave different bytes after other allocations (e.g. a GIF conversion). MALLOC_PERTURB_ makes glibc
    fill fresh allocations with a given byte: the output must not care."""
    shas = set()
    for perturb in ("0", "85", "170"):
        env = {**os.environ, "MALLOC_PERTURB_": perturb}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(tmp_path / f"p{perturb}.mp4")],
            env=env, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        shas.add(out.stdout.strip().splitlines()[-1])
    assert len(shas) == 1


def test_bytes_memoryview_and_ndarray_inputs_are_equivalent(tmp_path):
    frames = [moving_pattern(i, W, H) for i in range(8)]
    infos = []
    for kind, conv in (("nd", lambda a: a), ("bytes", bytes), ("mv", memoryview)):
        with Mp4Writer(tmp_path / f"{kind}.mp4", width=W, height=H, fps=FPS) as w:
            for f in frames:
                w.write(conv(f) if kind != "bytes" else f.tobytes())
        infos.append(w.close().sha256)
    assert len(set(infos)) == 1


def test_no_wall_clock_metadata_and_faststart(tmp_path):
    path = tmp_path / "a.mp4"
    encode(path, 5)
    data = path.read_bytes()
    assert b"Lavf" not in data  # fflags=+bitexact: no libavformat version string
    with av.open(str(path)) as c:
        assert "creation_time" not in c.metadata
        assert "creation_time" not in c.streams.video[0].metadata
        assert "encoder" not in c.metadata
    atoms = top_level_atoms(path)
    assert atoms.index(b"moov") < atoms.index(b"mdat")  # faststart: playable while downloading


def test_odd_size_is_padded_to_even_and_reported_honestly(tmp_path):
    src = moving_pattern(0, 161, 119)
    with Mp4Writer(tmp_path / "odd.mp4", width=161, height=119, fps=FPS, crf=0) as w:
        assert (w.source_width, w.source_height, w.width, w.height) == (161, 119, 162, 120)
        for _ in range(3):
            w.write(src)
    info = w.close()
    assert (info.width, info.height) == (162, 120)
    p = probe(info.path)
    assert (p["width"], p["height"], p["frames"]) == (162, 120, 3)
    with av.open(info.path) as c:
        out = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    # Lossless-ish (crf 0, but 4:2:0 chroma): the source region survives, the pad copies the edge.
    assert np.abs(out[:119, :161] - src).mean() < 6
    assert np.abs(out[:119, 161] - out[:119, 160]).mean() < 6
    assert np.abs(out[119, :161] - out[118, :161]).mean() < 6


def test_one_writer_across_two_episodes(tmp_path):
    with Mp4Writer(tmp_path / "cat.mp4", width=W, height=H, fps=FPS) as w:
        m1 = w.mark("episode-1")
        for i in range(20):
            w.write(moving_pattern(i, W, H))
        m2 = w.mark("episode-2")
        for i in range(25):
            w.write(moving_pattern(100 + i, W, H))
    info = w.close()
    assert info.frames == 45 and info.duration_s == 1.5
    assert (m1.frame, m1.start_s, m2.frame, m2.start_s) == (0, 0.0, 20, 20 / 30)
    assert w.marks == (m1, m2) and w.time_of(20) == m2.start_s
    assert probe(info.path)["frames"] == 45
    with av.open(info.path) as c:
        keys = [round(f.time * FPS) for f in c.decode(video=0) if f.key_frame]
    assert 20 in keys  # an IDR at each episode start: players seek there exactly


def test_errors_are_clear(tmp_path):
    with pytest.raises(FrameFormatError, match=r"expected \(120, 160, 3\)"):
        with Mp4Writer(tmp_path / "bad.mp4", width=W, height=H, fps=FPS) as w:
            w.write(np.zeros((H, W, 4), np.uint8))
    assert not (tmp_path / "bad.mp4").exists() and not (tmp_path / "bad.mp4.partial").exists()

    w = Mp4Writer(tmp_path / "short.mp4", width=W, height=H, fps=FPS)
    with pytest.raises(FrameFormatError, match="bytes"):
        w.write(b"\x00" * 10)
    with pytest.raises(FrameFormatError, match="uint8"):
        w.write(np.zeros((H, W, 3), np.float32))
    with pytest.raises(NoFramesError):
        w.close()
    assert not (tmp_path / "short.mp4").exists()

    w = Mp4Writer(tmp_path / "ok.mp4", width=W, height=H, fps=FPS)
    w.write(moving_pattern(0, W, H))
    w.close()
    with pytest.raises(WriterClosedError):
        w.write(moving_pattern(1, W, H))

    with pytest.raises(CodecUnavailableError, match="available"):
        Mp4Writer(tmp_path / "x.mp4", width=W, height=H, fps=FPS, codec="nope264")
    with pytest.raises(ValueError, match="crf"):
        Mp4Writer(tmp_path / "x.mp4", width=W, height=H, fps=FPS, crf=99)
    with pytest.raises(ValueError, match="preset"):
        Mp4Writer(tmp_path / "x.mp4", width=W, height=H, fps=FPS, preset="warp")
    with pytest.raises(TypeError, match="path"):
        Mp4Writer(object(), width=W, height=H, fps=FPS)


@pytest.mark.skipif("libsvtav1" not in available_codecs(), reason="no libsvtav1 in this PyAV")
def test_av1_is_optional_and_deterministic(tmp_path):
    kw = dict(width=64, height=48, codec="libsvtav1", crf=40, preset="ultrafast")
    a = encode(tmp_path / "a.mp4", 10, **kw)
    b = encode(tmp_path / "b.mp4", 10, **kw)
    assert a.sha256 == b.sha256 and a.codec == "libsvtav1"
    p = probe(a.path)
    assert p["frames"] == 10 and p["duration_s"] == pytest.approx(10 / 30, abs=1e-6)
