"""Frames ↔ FrameBatch: every message fits max_payload; frames come back whole, in order, once."""
import os

import pytest

from simreel import events as ev
from simreel.framing import FrameAssembler, FramePacker, FrameSequenceError


def _frames(n, w, h):
    return [os.urandom(w * h * 3) for _ in range(n)]


@pytest.mark.parametrize("w,h,max_payload", [(64, 48, 1 << 20), (1280, 720, 1 << 20), (640, 480, 256 * 1024)])
def test_pack_then_assemble_gives_the_same_frames(w, h, max_payload):
    frames = _frames(7, w, h)
    packer = FramePacker("r", 1, 0, w, h, max_payload)
    batches = []
    for i, f in enumerate(frames):
        batches += packer.add(i, i / 30, f, {"step": i})
    batches += packer.flush(last=True)
    for b in batches:
        assert len(ev.encode_frames(b)) <= max_payload
    asm = FrameAssembler()
    out = [f for b in batches for f in asm.feed(b)]
    assert [f.pixels for f in out] == frames
    assert [f.index for f in out] == list(range(7))
    assert [f.telemetry["step"] for f in out] == list(range(7))
    assert batches[-1].last
    if w * h * 3 > max_payload:
        assert max(b.parts for b in batches) > 1


def test_small_frames_share_a_message():
    packer = FramePacker("r", 1, 0, 32, 32, 1 << 20)
    out = []
    for i, f in enumerate(_frames(10, 32, 32)):
        out += packer.add(i, 0.0, f)
    out += packer.flush(last=True)
    assert len(out) == 1 and out[0].count == 10


def test_redelivered_batches_are_ignored_and_gaps_are_errors():
    packer = FramePacker("r", 1, 0, 1280, 720, 1 << 20)
    batches = [b for i, f in enumerate(_frames(2, 1280, 720)) for b in packer.add(i, 0.0, f)]
    asm = FrameAssembler()
    got = []
    for b in batches[:2] + batches[:2] + batches[2:4] + batches[2:3]:
        got += asm.feed(b)
    assert len(got) == 1  # frame 0 whole once; frame 1 incomplete
    gap = FrameAssembler()
    with pytest.raises(FrameSequenceError):
        gap.feed(batches[-1])  # a part of frame 1 with frame 0 missing
