"""Timers as specifications: a tick returns or yields the events that follow, `every` publishes them,
and a failed tick is followed by the next one. The encoder's janitor is such a tick: given frames
that no SimStarted claims, at the second sweep in a row they are purged and a dead letter says why.
"""
from __future__ import annotations

import asyncio

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.transport.periodic import every
from simreel.transport.run_publisher import RunPublisher
from simreel.services.encoder.janitor import FramesJanitor


def dead_letter(n: int) -> ev.DeadLettered:
    return ev.DeadLettered.of(f"tick-{n}", service="test", subject="simreel.test", reason=f"tick {n}")


class Warnings:
    """A logger that keeps the warnings it is given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []

    def warning(self, event: str, **kw) -> None:
        self.seen.append((event, kw))


async def test_every_publishes_each_event_as_the_tick_yields_it_and_goes_on_after_a_failed_tick(bus):
    stop = asyncio.Event()
    log = Warnings()
    calls = 0
    published_before_next: list[bool] = []

    async def tick():
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("store away")
        if calls == 3:
            stop.set()
        yield dead_letter(calls)
        published_before_next.append(dead_letter(calls).event_id in {e.event_id for e in bus.events})
        yield ev.DeadLettered.of(f"tick-{calls}-b", service="test", subject="simreel.test", reason="second")

    await asyncio.wait_for(every(bus, 0.01, tick, stop, log=log, failed="sweep_failed"), timeout=30)
    assert [e.event_id for e in bus.events] == ["dl-tick-1", "dl-tick-1-b", "dl-tick-3", "dl-tick-3-b"]
    assert published_before_next == [True, True]
    assert log.seen == [("sweep_failed", {"error": "RuntimeError: store away"})]


async def test_every_publishes_what_a_tick_returns(bus):
    stop = asyncio.Event()

    async def tick() -> list[ev.Event]:
        stop.set()
        return [dead_letter(1), dead_letter(2)]

    await asyncio.wait_for(every(bus, 0.01, tick, stop), timeout=30)
    assert [e.event_id for e in bus.events] == ["dl-tick-1", "dl-tick-2"]


async def test_every_stops_while_waiting_for_the_next_tick(bus):
    stop = asyncio.Event()
    ticked = []

    async def tick() -> list[ev.Event]:
        ticked.append(1)
        return []

    runner = asyncio.create_task(every(bus, 3600.0, tick, stop))
    stop.set()
    await asyncio.wait_for(runner, timeout=10)
    assert ticked == [] and bus.events == []


# --- the encoder's janitor -------------------------------------------------------------------------


async def start(bus, run_id: str, attempt: int = 1) -> None:
    """A SimStarted in the log, and one frame message of its episode 0 on FRAMES."""
    pub = RunPublisher(bus, run_id=run_id, attempt=attempt, session="s", fps=10, frame_width=16, frame_height=16)
    await bus.publish(pub.started(scene="synthetic", episodes=1, frames_per_episode=[1], width=16, height=16,
                                  outputs=ev.OutputSpec()))
    await frames(bus, run_id, attempt)


async def frames(bus, run_id: str, attempt: int = 1) -> str:
    subject = subjects.frames(run_id, attempt, 0)
    await bus.publish_frame_data(subject, b"frame batch", f"{subject}-1")
    return subject


async def test_janitor_purges_frames_nobody_started_at_the_second_sweep_and_says_why(bus, given):
    await start(bus, "real-1")
    ghost = await frames(bus, "ghost-1")
    janitor = FramesJanitor(bus)
    assert await given.tick(janitor.sweep) == []  # once: its SimStarted may be on its way
    assert {m.subject for m in bus.frames} == {ghost, subjects.frames("real-1", 1, 0)}
    (dead,) = await given.tick(janitor.sweep)
    assert (dead.event_id, dead.run_id, dead.service, dead.subject) == (
        "dl-frames-ghost-1-1", "ghost-1", "encoder", subjects.run_frames("ghost-1", 1))
    assert "no SimStarted" in dead.reason and "purged from FRAMES" in dead.reason
    assert [m.subject for m in bus.frames] == [subjects.frames("real-1", 1, 0)]
    assert await given.tick(janitor.sweep) == []


async def test_janitor_spares_an_attempt_whose_start_arrives_between_sweeps_but_not_a_later_attempt(bus, given):
    late = await frames(bus, "late-1")
    janitor = FramesJanitor(bus)
    assert await given.tick(janitor.sweep) == []
    await start(bus, "late-1")
    beyond = await frames(bus, "late-1", attempt=2)  # frames of an attempt the simulator never started
    assert await given.tick(janitor.sweep) == []
    (dead,) = await given.tick(janitor.sweep)
    assert dead.event_id == "dl-frames-late-1-2"
    assert [m.subject for m in bus.frames] == [late] and beyond != late
