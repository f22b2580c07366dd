"""Frames ↔ FrameBatch: every message fits max_payload; frames come back whole, in order, once —
raw or zstd-compressed, and a damaged compressed payload is an error, never a wrong pixel."""
import os

import numpy as np
import pytest

from simreel.contract import events as ev
from simreel.transport import framecodec
from simreel.transport.framing import FrameAssembler, FramePacker, FrameSequenceError, inflate

try:
    from compression import zstd
except ImportError:
    from backports import zstd


def _frames(n, w, h):
    return [os.urandom(w * h * 3) for _ in range(n)]


def _rendered_like(n, w, h):
    """Flat colours with a moving box and a little noise: compressible, like rendered scenes."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[: h // 2] = (90, 140, 200)
        img[h // 2:] = (60, 60, 60)
        x = (i * 7) % max(1, w - 8)
        img[h // 3: h // 3 + 8, x: x + 8] = (250, 30, 30)
        img[rng.integers(0, h, 50), rng.integers(0, w, 50)] = rng.integers(0, 255, (50, 3), dtype=np.uint8)
        out.append(img.tobytes())
    return out


def _pack(frames, w, h, max_payload, compression, telemetry=True):
    packer = FramePacker("r", 1, 0, w, h, max_payload, compression=compression)
    batches = []
    for i, f in enumerate(frames):
        batches += packer.add(i, i / 30, f, {"step": i} if telemetry else None)
    return batches + packer.flush(last=True)


# Every size class: several frames per message, about one per message, split across messages.
SIZES = [(64, 48, 1 << 20), (640, 480, 1 << 20), (1280, 720, 1 << 20), (640, 480, 256 * 1024)]


@pytest.mark.parametrize("compression", ["none", "zstd"])
@pytest.mark.parametrize("make", [_frames, _rendered_like], ids=["noise", "rendered"])
@pytest.mark.parametrize("w,h,max_payload", SIZES)
def test_pack_then_assemble_gives_the_same_frames(w, h, max_payload, make, compression):
    frames = make(7, w, h)
    batches = _pack(frames, w, h, max_payload, compression)
    for b in batches:
        assert len(ev.encode_frames(b)) <= max_payload
        assert b.compression == compression
    # Through the wire format, as the encoder reads it (zero-copy views).
    wire = [ev.decode_frames_view(ev.encode_frames(b)) for b in batches]
    asm = FrameAssembler()
    out = [f for b in wire for f in asm.feed(b)]
    assert [bytes(f.pixels) for f in out] == frames
    assert [f.index for f in out] == list(range(7))
    assert [f.telemetry["step"] for f in out] == list(range(7))
    assert batches[-1].last
    if make is _frames and w * h * 3 > max_payload:
        assert max(b.parts for b in batches) > 1  # noise does not compress: still split


def test_compressed_frames_pack_by_compressed_size():
    frames = _rendered_like(40, 640, 480)
    raw = _pack(frames, 640, 480, 1 << 20, "none")
    packed = _pack(frames, 640, 480, 1 << 20, "zstd")
    assert max(b.count for b in raw) == 1  # one 921,600-byte frame per 1 MiB message
    assert max(b.count for b in packed) > 8  # many compressed frames per message …
    assert sum(len(b.frames) for b in packed) * 8 < sum(len(b.frames) for b in raw)  # … ≥ 8× fewer bytes
    assert all(len(ev.encode_frames(b)) <= 1 << 20 for b in packed)


def test_telemetry_counts_against_the_payload():
    rows = [{"step": i, "action": [0.123456789] * 2000} for i in range(10)]  # ~18 kB each
    packer = FramePacker("r", 1, 0, 32, 32, 64 * 1024 + 16 * 1024)
    batches = []
    for i, f in enumerate(_rendered_like(10, 32, 32)):
        batches += packer.add(i, 0.0, f, rows[i])
    batches += packer.flush(last=True)
    assert all(len(ev.encode_frames(b)) <= 80 * 1024 for b in batches)
    assert sum(b.count for b in batches) == 10


def test_mixed_raw_and_compressed_batches_in_one_episode():
    frames = _rendered_like(12, 320, 240)
    r = FramePacker("r", 1, 0, 320, 240, 1 << 20, compression="none")
    raw = [b for i, f in enumerate(frames[:6]) for b in r.add(i, i / 30, f)] + r.flush()
    z = FramePacker("r", 1, 0, 320, 240, 1 << 20, seq=len(raw), compression="zstd")
    batches = raw + [b for i, f in enumerate(frames[6:], start=6) for b in z.add(i, i / 30, f)] + z.flush(last=True)
    assert {b.compression for b in batches} == {"none", "zstd"}
    asm = FrameAssembler()
    out = [f for b in batches for f in asm.feed(ev.decode_frames_view(ev.encode_frames(b)))]
    assert [bytes(f.pixels) for f in out] == frames


def test_small_frames_share_a_message():
    for compression in ("none", "zstd"):
        batches = _pack(_frames(10, 32, 32), 32, 32, 1 << 20, compression, telemetry=False)
        assert len(batches) == 1 and batches[0].count == 10


def test_redelivered_batches_are_ignored_and_gaps_are_errors():
    packer = FramePacker("r", 1, 0, 1280, 720, 1 << 20, compression="none")
    batches = [b for i, f in enumerate(_frames(2, 1280, 720)) for b in packer.add(i, 0.0, f)]
    asm = FrameAssembler()
    got = []
    for b in batches[:2] + batches[:2] + batches[2:4] + batches[2:3]:
        got += asm.feed(b)
    assert len(got) == 1  # frame 0 whole once; frame 1 incomplete
    gap = FrameAssembler()
    with pytest.raises(FrameSequenceError):
        gap.feed(batches[-1])  # a part of frame 1 with frame 0 missing


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x40
    return bytes(b)


def test_a_damaged_compressed_payload_is_an_error_not_a_picture():
    frames = _rendered_like(4, 160, 120)
    (batch,) = _pack(frames, 160, 120, 1 << 20, "zstd", telemetry=False)
    assert bytes(inflate(batch).frames) == b"".join(frames)
    for at in (len(batch.frames) // 2, len(batch.frames) - 2, 5):  # body, checksum, frame header
        bad = ev.FrameBatch(**{**{f: getattr(batch, f) for f in batch.__struct_fields__},
                               "frames": _flip(batch.frames, at)})
        with pytest.raises(framecodec.CorruptFrames):
            inflate(bad)
        with pytest.raises(FrameSequenceError, match="zstd"):
            FrameAssembler().feed(bad)
    truncated = ev.FrameBatch(**{**{f: getattr(batch, f) for f in batch.__struct_fields__},
                                 "frames": batch.frames[:-100]})
    with pytest.raises(framecodec.CorruptFrames):
        inflate(truncated)


def test_a_corrupt_part_of_a_split_frame_fails_the_frame():
    frame = _frames(1, 640, 480)[0]
    batches = _pack([frame], 640, 480, 256 * 1024, "zstd", telemetry=False)
    assert batches[0].parts > 1
    parts = list(batches[:-1])
    p = parts[1]
    parts[1] = ev.FrameBatch(**{**{f: getattr(p, f) for f in p.__struct_fields__}, "frames": _flip(p.frames, 100)})
    asm = FrameAssembler()
    with pytest.raises(FrameSequenceError, match="frame 0"):
        for b in parts:
            asm.feed(b)


def test_payload_cannot_inflate_past_what_the_header_announces():
    bomb = zstd.compress(bytes(50 * 1024 * 1024))  # 50 MB of zeros in a few kB
    with pytest.raises(framecodec.CorruptFrames, match="more than"):
        framecodec.decompress(bomb, 160 * 120 * 3)
    short = zstd.compress(bytes(100))
    with pytest.raises(framecodec.CorruptFrames, match="announces"):
        framecodec.decompress(short, 160 * 120 * 3)


def test_any_valid_zstd_framing_is_accepted():
    """What another language's producer may send: one zstd frame for the whole batch, no checksum."""
    frames = _rendered_like(3, 64, 48)
    one = zstd.compress(b"".join(frames))
    batch = ev.FrameBatch(run_id="r", attempt=1, episode=0, seq=0, first_index=0, count=3, width=64, height=48,
                          compression="zstd", times=[0.0, 0.1, 0.2], frames=one, last=True)
    out = FrameAssembler().feed(ev.decode_frames_view(ev.encode_frames(batch)))
    assert [bytes(f.pixels) for f in out] == frames


def test_older_producers_batches_have_no_compression_field():
    raw = ev.FrameBatch(run_id="r", attempt=1, episode=0, seq=0, first_index=0, count=1, width=16, height=16,
                        times=[0.0], frames=bytes(16 * 16 * 3))
    wire = ev.encode_frames(raw)
    assert b"compression" in wire
    import msgspec

    legacy = msgspec.msgpack.encode({k: v for k, v in msgspec.structs.asdict(raw).items() if k != "compression"})
    assert ev.decode_frames(legacy).compression == "none"


def test_unknown_compression_is_refused_by_the_packer():
    with pytest.raises(ValueError, match="zstd"):
        FramePacker("r", 1, 0, 16, 16, 1 << 20, compression="lz4")


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_abort_marker_follows_the_episodes_batches_and_drops_pending_frames(compression):
    """The marker's Nats-Msg-Id (`run.attempt.episode.seq`) must differ from every batch already sent,
    or JetStream's duplicate window would drop it and the encoder would wait for frames forever."""
    packer = FramePacker("r", 1, 0, 16, 16, 1 << 20, compression=compression)
    sent = [b for i in range(40) for b in packer.add(i, i / 30, os.urandom(16 * 16 * 3))]
    assert sent and packer.pending  # some frames still pending
    (marker,) = packer.abort()
    assert marker.aborted and marker.count == 0 and marker.frames == b""
    assert marker.seq not in {b.seq for b in sent}
    assert packer.flush() == []  # the pending frames were dropped with the attempt
