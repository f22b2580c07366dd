"""Compressed frames on a real stack (nats-server, encoder and uploader processes): the same frames
give the same video bytes raw or zstd-compressed, and a damaged payload is set aside with a reason
instead of stalling the run."""
from __future__ import annotations

import asyncio
import threading

import pytest

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.transport.bus import Bus
from simreel.client import Client
from simreel.runtime.config import NatsSettings
from simreel.transport.framing import FramePacker
from simreel.recorder import RunRecorder

pytestmark = pytest.mark.integration

W, H, FPS = 160, 120, 15


@pytest.fixture(scope="module")
def rendered() -> list[bytes]:
    """Real MuJoCo frames (cartpole, random policy), rendered headless in their own thread."""
    from simreel.sim import loader, policies
    from simreel.sim.rollout import EpisodeRunner

    model, _ = loader.resolve_scene("cartpole", {}, (), W, H)
    frames: list[bytes] = []

    def body() -> None:
        runner = EpisodeRunner(model, width=W, height=H, fps=FPS, quality="fast")
        try:
            runner.run_episode(seed=1, policy=policies.make_policy("random", model, seed=1), duration_s=1.0,
                               on_frame=lambda f: frames.append(f.pixels.tobytes()))
        finally:
            runner.close()

    t = threading.Thread(target=body)
    t.start()
    t.join(120)
    assert not t.is_alive(), "the rendering thread did not finish within 120 s"
    assert len(frames) == FPS
    return frames


async def _record(bus: Bus, run_id: str, frames: list[bytes], compression: str) -> tuple[RunRecorder, dict]:
    rec = RunRecorder(bus, run_id=run_id, width=W, height=H, fps=FPS, frame_compression=compression,
                      outputs=ev.OutputSpec(formats=["mp4", "png"]))
    started = await rec.start()
    assert started.frame_compression == compression
    for i, px in enumerate(frames):
        await rec.add_frame(px, {"i": i})
    await rec.end_episode(seed=1)
    await rec.complete()
    result = await Client(bus).wait(run_id, timeout=120)
    assert result.status == "completed", result.error
    return rec, {(a.kind, a.format): a for a in result.artifacts}


async def test_video_is_byte_identical_raw_and_compressed(stack, rendered):
    bus = await Bus.connect(NatsSettings(url=stack.url))
    try:
        raw_rec, raw = await _record(bus, "same-bytes-raw", rendered, "none")
        z_rec, z = await _record(bus, "same-bytes-zstd", rendered, "zstd")
    finally:
        await bus.close()
    assert raw[("video", "mp4")].sha256 == z[("video", "mp4")].sha256
    assert raw[("frames", "png")].bytes == z[("frames", "png")].bytes
    # The frames really travelled differently: rendered frames are several times smaller compressed.
    assert z_rec.publisher.sent * 3 < raw_rec.publisher.sent


def _corrupt(batch: ev.FrameBatch) -> bytes:
    damaged = bytearray(batch.frames)
    damaged[len(damaged) // 2] ^= 0xFF
    return ev.encode_frames(ev.FrameBatch(**{**{f: getattr(batch, f) for f in batch.__struct_fields__},
                                             "frames": bytes(damaged)}))


async def _dead_letters(bus: Bus, subject: str) -> list[ev.DeadLettered]:
    found = [e async for e in bus.replay("simreel.evt.dead.encoder.>")]
    return [e for e in found if isinstance(e, ev.DeadLettered) and e.subject == subject]


async def test_corrupt_payload_is_dead_lettered_and_the_run_goes_on(stack, rendered):
    """A damaged copy of the first batch arrives before the real one: it is set aside, the video is made."""
    run_id = "corrupt-extra"
    bus = await Bus.connect(NatsSettings(url=stack.url))
    try:
        packer = FramePacker(run_id, 1, 0, W, H, bus.max_payload)
        (first,) = [b for i, px in enumerate(rendered) for b in packer.add(i, i / FPS, px)] + packer.flush()
        subject = subjects.frames(run_id, 1, 0)
        await bus.js.publish(subject, _corrupt(first), headers={"Nats-Msg-Id": f"{run_id}-damaged"})
        _, artifacts = await _record(bus, run_id, rendered, "zstd")
        assert artifacts[("video", "mp4")].bytes > 0
        dead = await _dead_letters(bus, subject)
    finally:
        await bus.close()
    assert len(dead) == 1
    assert "corrupt compressed frame batch" in dead[0].reason and "zstd" in dead[0].reason


async def test_corrupt_payload_that_loses_frames_fails_the_run_at_once(stack, rendered):
    """The only copy of some frames is damaged: the encoder names the gap instead of waiting for frames."""
    run_id = "corrupt-gap"
    bus = await Bus.connect(NatsSettings(url=stack.url))
    try:
        rec = RunRecorder(bus, run_id=run_id, width=W, height=H, fps=FPS)
        await rec.start()
        packer = FramePacker(run_id, 1, 0, W, H, 4 * W * H + 16 * 1024)  # small messages: several batches
        batches = [b for i, px in enumerate(rendered) for b in packer.add(i, i / FPS, px)] + packer.flush(last=True)
        assert len(batches) >= 3
        subject = subjects.frames(run_id, 1, 0)
        for b in batches:
            data = _corrupt(b) if b.seq == 1 else ev.encode_frames(b)
            await bus.js.publish(subject, data, headers={"Nats-Msg-Id": f"{run_id}.{b.seq}"})
        failed = None
        async with asyncio.timeout(120):
            async for e in bus.follow(f"simreel.evt.encode.failed.{run_id}"):
                failed = e
                break
        dead = await _dead_letters(bus, subject)
    finally:
        await bus.close()
    assert isinstance(failed, ev.EncodeFailed)
    assert "expected frame" in failed.message  # the gap, not the frame-idle timeout
    assert len(dead) == 1 and "corrupt compressed frame batch" in dead[0].reason


async def test_prefetch_reads_again_after_the_last_used_message(nats_server, rendered):
    """Frames are not acked, so a delivered message this process never read is not redelivered: the
    prefetch starts over after the last message the job used, from what is still in FRAMES."""
    from nats.js import api

    from simreel.services.encoder.prefetch import Prefetch

    run_id = "prefetch-resume"
    bus = await Bus.connect(NatsSettings(url=nats_server.url))
    try:
        packer = FramePacker(run_id, 1, 0, W, H, 2 * W * H * 3 + 16 * 1024)  # 2 frames a message (raw size)
        batches = [b for i, px in enumerate(rendered) for b in packer.add(i, i / FPS, px)] + packer.flush(last=True)
        for b in batches:
            await bus.js.publish(subjects.frames(run_id, 1, 0), ev.encode_frames(b))

        async def subscribe(start_seq):
            return await bus.js.pull_subscribe(
                subjects.run_frames(run_id, 1), stream=subjects.FRAMES_STREAM,
                config=api.ConsumerConfig(
                    deliver_policy=api.DeliverPolicy.ALL if start_seq is None else api.DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=start_seq, ack_policy=api.AckPolicy.NONE, mem_storage=True))

        prefetch = await Prefetch(subscribe, batch=2).start()
        try:
            first = [it for _ in range(2) for it in await prefetch.get()]
            assert [it.batch.seq for it in first] == [0, 1]
            assert [bytes(p) for p in first[0].pixels] == rendered[:len(first[0].pixels)]
            await prefetch.resume(first[0].msg.metadata.sequence.stream)  # as if batch 1 had been lost
            again = []
            while not again or not again[-1].batch.last:
                again += await prefetch.get()
        finally:
            await prefetch.close()
    finally:
        await bus.close()
    assert [it.batch.seq for it in again] == [b.seq for b in batches[1:]]
