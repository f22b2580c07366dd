"""Frames lost in the middle of an attempt, as a JetStream leader change loses the publishes in flight:
the encoder waits for the simulator's next attempt instead of failing the run under it."""
from __future__ import annotations

import pytest

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.transport.bus import Bus
from simreel.runtime.config import NatsSettings
from simreel.transport.framing import FramePacker
from tests.support.waits import until

pytestmark = pytest.mark.integration

W, H, FPS, N = 64, 48, 15, 15


def _frames() -> list[bytes]:
    return [bytes([(i * 16 + y) % 256 for y in range(H) for _ in range(W * 3)]) for i in range(N)]


def _started(run_id: str, attempt: int) -> ev.SimStarted:
    return ev.SimStarted(event_id=f"started-{run_id}-{attempt}", run_id=run_id, attempt=attempt, scene="test",
                         episodes=1, frames_per_episode=[N], fps=FPS, width=W, height=H, cameras=[],
                         physics_dt=0.002, gl_backend="none", gl_renderer="none", session="gaps",
                         outputs=ev.OutputSpec(formats=["mp4"], telemetry=False), frame_compression="none")


def _batches(run_id: str, attempt: int) -> list[ev.FrameBatch]:
    packer = FramePacker(run_id, attempt, 0, W, H, 3 * W * H * 4 + 16 * 1024, compression="none")  # 4 per batch
    return [b for i, px in enumerate(_frames()) for b in packer.add(i, i / FPS, px)] + packer.flush(last=True)


async def _publish(bus: Bus, batches: list[ev.FrameBatch]) -> None:
    for b in batches:
        await bus.js.publish(subjects.frames(b.run_id, b.attempt, b.episode), ev.encode_frames(b),
                             headers={"Nats-Msg-Id": f"{b.run_id}.{b.attempt}.{b.episode}.{b.seq}"})


async def _read_to_end(bus: Bus, run_id: str, attempt: int) -> bool:
    """An encoder's consumer on this attempt's frames has delivered every one of them."""
    infos = await bus.js.consumers_info(subjects.FRAMES_STREAM)
    mine = [c for c in infos if c.config.filter_subject == subjects.run_frames(run_id, attempt)]
    return any(c.num_pending == 0 and c.delivered.stream_seq > 0 for c in mine)


async def test_frames_lost_mid_attempt_wait_for_the_next_attempt(stack):
    run_id = "gap-then-retry"
    bus = await Bus.connect(NatsSettings(url=stack.url))
    try:
        # Attempt 1: batch 1 of 4 never reached the stream, the ones after it did.
        await bus.publish(_started(run_id, 1))
        first = _batches(run_id, 1)
        assert len(first) == 4
        await _publish(bus, [b for b in first if b.seq != 1])
        await until(lambda: _read_to_end(bus, run_id, 1), timeout=60, what="the encoder to read attempt 1")

        # The simulator's attempt 1 failed on the lost acks; attempt 2 publishes every frame.
        await bus.publish(_started(run_id, 2))
        await _publish(bus, _batches(run_id, 2))

        async def settled() -> list[ev.Event] | None:
            info = await bus.js.consumer_info(subjects.EVENTS_STREAM, "encoder")
            events = [e async for e in bus.replay(subjects.run_events(run_id))]
            videos = [e for e in events if isinstance(e, ev.VideoAvailable)]
            return events if videos and info.num_ack_pending == 0 else None

        events = await until(settled, timeout=90, what="attempt 2's video, both encode jobs finished")
    finally:
        await bus.close()
    assert [e for e in events if isinstance(e, ev.EncodeFailed)] == []
    assert [(v.attempt, v.frames) for v in events if isinstance(v, ev.VideoAvailable)] == [(2, N)]
