"""Wiring of the simulator: one durable consumer on SimRequested, one handler."""
from __future__ import annotations

import asyncio

from simreel.contract import events as ev
from simreel.transport.bus import Bus
from simreel.runtime.config import Settings
from simreel.transport.scenefiles import SceneFileStore
from simreel.transport.staging import staging_for

from .scene_cache import SceneCache

NAME = "simulator"


async def run(bus: Bus, settings: Settings, stop: asyncio.Event) -> None:
    from simreel.sim import gl

    gl.choose_backend()  # before the first GL context: EGL, then OSMesa, unless MUJOCO_GL is set
    from .handlers import Simulator, refuse_undecodable_request

    cache = SceneCache(SceneFileStore(bus), settings.scene_cache_dir, settings.scene_cache_bytes)
    sim = Simulator(bus, settings, staging_for(settings, bus), cache)
    await bus.consume(NAME, {ev.SimRequested: sim.on_sim_requested}, stop=stop,
                      concurrency=settings.concurrency or 1, ack_wait_s=settings.ack_wait_s,
                      max_deliver=settings.max_deliver, on_undecodable=refuse_undecodable_request)
