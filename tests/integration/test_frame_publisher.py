"""FramePublisher on a real nats-server: the first refused frame fails the publisher at once, even
while an earlier frame's ack is still outstanding (as one whose reply was lost with a stream leader)."""
from __future__ import annotations

import nats.js.errors
import pytest

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.transport.bus import Bus, FramePublisher, connect
from simreel.runtime.config import NatsSettings

pytestmark = pytest.mark.integration


def _batch(episode: int) -> ev.FrameBatch:
    return ev.FrameBatch(run_id="r", attempt=1, episode=episode, seq=0, first_index=0, count=1, width=4, height=4,
                         times=[0.0], frames=bytes(48))


async def test_a_refused_frame_fails_the_publisher_without_waiting_for_earlier_acks(nats_server):
    bus = Bus(await connect(NatsSettings(url=nats_server.url), name="frame-publisher-test"))
    try:
        # No streams on this server. Episode 0's subject has a listener that never answers (an ack that
        # will not come); episode 1's has nobody, so JetStream's "no responders" refuses it at once.
        silent = await bus.nc.subscribe(subjects.frames("r", 1, 0))
        publisher = FramePublisher(bus, limit_bytes=1 << 20)
        await publisher.publish(_batch(0))
        await silent.next_msg(timeout=10)  # the frame is out, its ack outstanding
        await publisher.publish(_batch(1))
        with pytest.raises(nats.js.errors.NoStreamResponseError):
            await publisher.flush()  # waiting for episode 0's ack would end in a TimeoutError after 30 s
        with pytest.raises(nats.js.errors.NoStreamResponseError):
            await publisher.publish(_batch(2))  # and it stays failed: the attempt is over
    finally:
        await bus.close()


async def test_a_frame_unacknowledged_across_a_reconnect_fails_the_publisher(nats_server):
    """The ack of a frame sent before the connection dropped cannot arrive: the publisher says so when
    the client is back, instead of holding the attempt for the 30 s ack timeout (which let an encoder
    give up on the run before the simulator's next attempt started)."""
    bus = await Bus.connect(NatsSettings(url=nats_server.url), name="frame-publisher-reconnect")
    try:
        await bus.js.delete_stream(subjects.FRAMES_STREAM)  # so the frame below waits on a silent listener
        silent = await bus.nc.subscribe(subjects.frames("r", 1, 0))
        publisher = FramePublisher(bus, limit_bytes=1 << 20)
        await publisher.publish(_batch(0))
        await silent.next_msg(timeout=10)
        reconnected = bus.next_reconnect()
        nats_server.stop()
        nats_server.start()
        await reconnected
        with pytest.raises(ConnectionResetError, match="republishes"):
            await publisher.flush()  # without the reconnect check: TimeoutError after 30 s
    finally:
        await bus.close()
