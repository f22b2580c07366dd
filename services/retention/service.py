"""Wiring of retention: the index follows the whole artifact log (so every instance sees every
artifact), while the shared durable consumer decides which instance reacts to each new one."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

from simreel.contract import events as ev
from simreel.runtime import log as logs
from simreel.contract import subjects
from simreel.transport.bus import Bus
from simreel.transport.periodic import every
from simreel.runtime.config import Settings
from simreel.store.settings import store_from_env

from simreel.transport.scenefiles import SceneFileStore

from .handlers import Retention
from .scene_files import SceneFileIndex, delete_unreferenced
from simreel.readmodels.artifact_index import Policy, ArtifactIndex, policies_from_json

NAME = "retention"


def default_policy(settings: Settings) -> Policy:
    return Policy(keep_latest=settings.keep_latest, max_age_s=settings.max_age_s,
                  max_total_bytes=settings.max_total_bytes)


async def follow_index(bus: Bus, index: ArtifactIndex, caught_up: asyncio.Event, *,
                       outcomes: bool = False) -> None:
    """Apply every artifact event, past and future, to the index; set `caught_up` once the past is in.
    Bus.follow waits out a JetStream that cannot answer yet (a leader election after a node loss).
    With `outcomes` (a policy keeps failures or the worst returns) the whole log is followed, so each
    EpisodeEnded reaches the index in log order with the artifacts."""
    async for e in bus.follow(subjects.ALL_EVENTS if outcomes else subjects.ARTIFACT_EVENTS, caught_up=caught_up):
        index.apply(e)


async def follow_scene_files(bus: Bus, index: SceneFileIndex, caught_up: asyncio.Event) -> None:
    """Requests, run ends and artifacts, past and future: which runs still reference which files."""
    async for e in bus.follow(subjects.ALL_EVENTS, caught_up=caught_up):
        index.apply(e)


async def run(bus: Bus, settings: Settings, stop: asyncio.Event) -> None:
    log = logs.get(NAME)
    store = store_from_env()
    index = ArtifactIndex()
    default = default_policy(settings)
    ret = Retention(store, index, default, policies_from_json(default, settings.retention_policies))
    outcomes = any(p.uses_outcomes for p in (default, *ret.per_session.values()))
    caught_up = asyncio.Event()
    follower = asyncio.create_task(follow_index(bus, index, caught_up, outcomes=outcomes))
    await caught_up.wait()
    log.info("index_rebuilt", artifacts=len(index.entries), digest=index.digest(), policy=default.__dict__)
    file_index, files_caught_up = SceneFileIndex(), asyncio.Event()
    file_follower = asyncio.create_task(follow_scene_files(bus, file_index, files_caught_up))
    scene_files = SceneFileStore(bus)

    async def sweep() -> AsyncIterator[ev.Event]:
        """The policies' deletes, then the scene files' (once their index has caught up)."""
        for e in await ret.sweep():
            yield e
        if files_caught_up.is_set():
            for e in await delete_unreferenced(file_index, scene_files, settings.scene_file_grace_s):
                yield e

    sweeper = asyncio.create_task(every(bus, settings.sweep_interval_s, sweep, stop, log=log, failed="sweep_failed"))
    try:
        await bus.consume(NAME, {ev.ArtifactStored: ret.on_artifact_stored,
                                 ev.DeleteRequested: ret.on_delete_requested}, stop=stop, concurrency=1,
                          ack_wait_s=settings.ack_wait_s, max_deliver=settings.max_deliver)
    finally:
        for t in (sweeper, follower, file_follower):
            t.cancel()
        await asyncio.gather(sweeper, follower, file_follower, return_exceptions=True)
        await store.close()
