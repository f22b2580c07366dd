"""Wiring of the uploader: staged files and run reports → the configured artifact store."""
from __future__ import annotations

import asyncio

from simreel.contract import events as ev
from simreel.transport.bus import Bus
from simreel.runtime.config import Settings
from simreel.transport.staging import AnyStaging
from simreel.store.settings import store_from_env

from .handlers import Uploader

NAME = "uploader"


async def run(bus: Bus, settings: Settings, stop: asyncio.Event) -> None:
    store = store_from_env()
    up = Uploader(store, AnyStaging(settings, bus), key_prefix=settings.key_prefix, events=bus)
    try:
        await bus.consume(NAME, {
            ev.VideoAvailable: up.on_video_available,
            ev.VideoHeld: up.on_video_held,
            ev.EpisodeKept: up.on_episode_decided,
            ev.EpisodeDiscarded: up.on_episode_decided,
            ev.SceneSaved: up.on_scene_saved,
            ev.TelemetryStaged: up.on_telemetry_staged,
            ev.SimCompleted: up.on_sim_completed,
            ev.ArtifactStored: up.on_artifact_stored,
        }, stop=stop, concurrency=settings.concurrency or 4, ack_wait_s=settings.ack_wait_s,
            max_deliver=settings.max_deliver)
    finally:
        await store.close()
