"""Retention's index follower started while JetStream is paused (SIGSTOP): it must retry, not die.

Run by test_nats_faults.test_retention_index_waits_for_jetstream in a fresh interpreter:
`python -m tests.reliability.retention_away <nats url> <nats-server pid>`.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys

from simreel.contract import events as ev
from simreel.transport.bus import Bus, connect
from simreel.runtime.config import NatsSettings
from simreel.readmodels.artifact_index import ArtifactIndex
from simreel.services.retention.service import follow_index

from tests.support.waits import until


async def main(url: str, pid: int) -> None:
    bus = Bus(await connect(NatsSettings(url=url), name="reliability-retention"))
    await bus.ensure_streams()
    stored = ev.ArtifactStored(run_id="r1", kind="video", format="mp4", session="s", key="simreel/s/r1/0000/v.mp4",
                               url="file:///v.mp4", bytes=123, sha256="0" * 64, content_type="video/mp4")
    await bus.publish(stored)
    index, caught_up = ArtifactIndex(), asyncio.Event()
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            follower = asyncio.create_task(follow_index(bus, index, caught_up))
            await until(lambda: follower.done() or bus.retries["follow"] > 0,
                        timeout=60, what="a JetStream request to time out")
            assert not follower.done(), f"gave up while JetStream was away: {follower.exception()!r}"
        finally:
            os.kill(pid, signal.SIGCONT)
        await until(lambda: stored.key in index.entries, timeout=60, what="the index to hold the artifact")
        assert caught_up.is_set() and index.entries[stored.key].bytes == 123
        print("index holds the artifact", flush=True)
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    finally:
        await bus.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
