"""Frames nobody will read: batches on FRAMES for a run attempt that never started.

An encoder only reads the frames of a SimStarted it claimed, so frames published for an unknown run
(a buggy producer, a typo in a subject) would otherwise sit in FRAMES until its age limit, counting
against its byte cap. Every sweep lists FRAMES' subjects; an attempt with no SimStarted in the event
log at two sweeps in a row is purged and reported as a dead letter with the reason.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import nats.errors

from simreel.contract import events as ev
from simreel.runtime import log as logs
from simreel.contract import subjects
from simreel.transport.bus import HandlerBus

log = logs.get("encoder.janitor")


async def _started(bus: HandlerBus, run_id: str, attempt: str) -> bool:
    """Any SimStarted of this run with this attempt (or a later one) in the event log?"""
    if not ev.is_run_id(run_id):
        return False  # not a subject token a SimStarted could have
    last = await bus.last_event(subjects.of_run(ev.SimStarted, run_id))
    if last is None or not isinstance(last.event, ev.SimStarted):
        return False  # none, or an unreadable entry, which proves nothing
    return attempt.isdigit() and last.event.attempt >= int(attempt)


class FramesJanitor:
    """Remembers between sweeps which attempts had no SimStarted (`suspects`): one sweep may run
    while a SimStarted is being published, two in a row may not."""

    def __init__(self, bus: HandlerBus) -> None:
        self.bus = bus
        self.suspects: set[tuple[str, str]] = set()

    async def sweep(self) -> AsyncIterator[ev.DeadLettered]:
        """One pass: purges the frames of each attempt suspected twice and yields its dead letter
        (published before the next attempt is purged)."""
        bus = self.bus
        attempts = {(f.run_id, f.attempt) for s in await bus.frame_subjects() if (f := subjects.parse_frames(s))}
        unknown = set()
        for run_id, attempt in sorted(attempts):
            if not await _started(bus, run_id, attempt):
                unknown.add((run_id, attempt))
        for run_id, attempt in sorted(unknown & self.suspects):
            subject = subjects.run_frames(run_id, attempt)
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await bus.purge_frames(run_id, attempt)
            yield ev.DeadLettered.of(
                f"frames-{run_id}-{attempt}", run_id=run_id, service="encoder", subject=subject,
                reason=f"frames for run {run_id!r} attempt {attempt} but no SimStarted for it: nobody will encode "
                       "them; purged from FRAMES")
            log.warning("orphan_frames_purged", run_id=run_id, attempt=attempt)
        self.suspects = unknown - self.suspects
