"""Wiring of retention: the index follows the whole artifact log (so every instance sees every
artifact), while the shared durable consumer decides which instance reacts to each new one."""
from __future__ import annotations

import asyncio
import contextlib

from simreel import events as ev
from simreel import log as logs
from simreel import subjects
from simreel.bus import Bus
from simreel.config import Settings
from simreel.store.settings import store_from_env

from .handlers import Retention
from simreel.retention import Policy, RetentionIndex, policies_from_json

NAME = "retention"


def default_policy(settings: Settings) -> Policy:
    return Policy(keep_latest=settings.keep_latest, max_age_s=settings.max_age_s,
                  max_total_bytes=settings.max_total_bytes)


async def follow_index(bus: Bus, index: RetentionIndex, caught_up: asyncio.Event, *,
                       outcomes: bool = False) -> None:
    """Apply every artifact event, past and future, to the index; set `caught_up` once the past is in.
    Bus.follow waits out a JetStream that cannot answer yet (a leader election after a node loss).
    With `outcomes` (a policy keeps failures or the worst returns) the whole log is followed, so each
    EpisodeEnded reaches the index in log order with the artifacts."""
    async for e in bus.follow(subjects.ALL_EVENTS if outcomes else subjects.ARTIFACT_EVENTS, caught_up=caught_up):
        index.apply(e)


async def run(bus: Bus, settings: Settings, stop: asyncio.Event) -> None:
    log = logs.get(NAME)
    store = store_from_env()
    index = RetentionIndex()
    default = default_policy(settings)
    ret = Retention(store, index, default, policies_from_json(default, settings.retention_policies))
    outcomes = any(p.uses_outcomes for p in (default, *ret.per_session.values()))
    caught_up = asyncio.Event()
    follower = asyncio.create_task(follow_index(bus, index, caught_up, outcomes=outcomes))
    await caught_up.wait()
    log.info("index_rebuilt", artifacts=len(index.entries), digest=index.digest(), policy=default.__dict__)

    async def sweeper() -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.sweep_interval_s)
            if not stop.is_set():
                try:
                    await bus.publish_all(await ret.sweep())
                except Exception as e:  # noqa: BLE001 - next sweep tries again
                    log.warning("sweep_failed", error=f"{type(e).__name__}: {e}")

    sweep = asyncio.create_task(sweeper())
    try:
        await bus.consume(NAME, {ev.ArtifactStored: ret.on_artifact_stored,
                                 ev.DeleteRequested: ret.on_delete_requested}, stop=stop, concurrency=1,
                          ack_wait_s=settings.ack_wait_s, max_deliver=settings.max_deliver)
    finally:
        for t in (sweep, follower):
            t.cancel()
        await asyncio.gather(sweep, follower, return_exceptions=True)
        await store.close()
