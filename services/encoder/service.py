"""Wiring of the encoder: one durable consumer on SimStarted; each job streams one run's frames."""
from __future__ import annotations

import asyncio
import gc

from simreel.contract import events as ev
from simreel.runtime.allocator import prefault, reuse_freed_buffers
from simreel.transport.bus import Bus
from simreel.transport.periodic import every
from simreel.runtime.config import Settings
from simreel.transport.staging import staging_for

from .handlers import Encoder
from .janitor import FramesJanitor, log as janitor_log
from .prefetch import READ_AHEAD_BYTES

NAME = "encoder"


async def run(bus: Bus, settings: Settings, stop: asyncio.Event) -> None:
    # Before the first worker thread: frame-sized buffers are reused, not page-faulted in afresh,
    # and the heap the read-ahead will fill is mapped before the first job, not during it.
    if reuse_freed_buffers():
        prefault(READ_AHEAD_BYTES)
    # What start-up created (modules, PyAV, numpy: about 10^5 objects) lives as long as the process:
    # kept out of the cycle collector, its passes walk only what the jobs allocate.
    gc.collect()
    gc.freeze()
    enc = Encoder(bus, settings, staging_for(settings, bus))
    janitor = asyncio.create_task(every(bus, settings.frames_janitor_s, FramesJanitor(bus).sweep, stop,
                                        log=janitor_log, failed="janitor_sweep_failed"))
    try:
        await bus.consume(NAME, {ev.SimStarted: enc.on_sim_started}, stop=stop,
                          concurrency=settings.concurrency or 2, ack_wait_s=settings.ack_wait_s,
                          max_deliver=settings.max_deliver)
    finally:
        janitor.cancel()
        await asyncio.gather(janitor, return_exceptions=True)
