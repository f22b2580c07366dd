"""SimRequested → SimStarted, FrameBatch…, EpisodeEnded…, SceneSaved, SimCompleted (or SimFailed).

The delivery count of the request is the attempt number: a simulator that dies mid-run leaves the
request unacked, JetStream redelivers it, and the next attempt publishes frames on new subjects, so
the stale frames of the dead attempt are never mixed in.
"""
from __future__ import annotations

import re
from typing import AsyncIterator

import msgspec

from simreel.contract import events as ev
from simreel.runtime import log as logs
from simreel.runtime.config import Settings
from simreel.transport.bus import Delivery, HandlerBus
from simreel.transport.staging import Staging

from .history import duplicate_dead_letter, duplicate_reason, judge_history, run_history
from .prepare import Prepared, Refused, prepare
from .run_attempt import RunAttempt
from .scene_cache import SceneCache


class Simulator:
    def __init__(self, bus: HandlerBus, settings: Settings, staging: Staging, scene_cache: SceneCache | None = None) -> None:
        self.bus = bus
        self.settings = settings
        self.staging = staging
        self.scene_cache = scene_cache

    async def on_sim_requested(self, req: ev.SimRequested, delivery: Delivery) -> AsyncIterator[ev.Event]:
        """Yields SimStarted, each EpisodeEnded as its episode ends, then SceneSaved and SimCompleted;
        or one SimFailed (or a DeadLettered for a duplicate request)."""
        log = logs.get("simulator", run_id=req.run_id, attempt=delivery.attempt)
        outcome = await self._refused_by_history(req, delivery, log)
        if outcome is None:
            outcome = await prepare(req, delivery.attempt, self.settings, self.scene_cache, log)
        match outcome:
            case Refused(events):
                for e in events:
                    yield e
            case Prepared() as prepared:
                async for e in RunAttempt(self.bus, self.settings, self.staging, req, delivery.attempt, prepared,
                                          log).events():
                    yield e

    async def _refused_by_history(self, req: ev.SimRequested, delivery: Delivery, log) -> Refused | None:
        """Nothing (already handled) or a dead letter (a duplicate) when the run id already has events."""
        history = await run_history(self.bus, req.run_id)
        if not history:
            return None
        match judge_history(history, delivery):
            case "done":  # this message's own earlier attempt finished; only its ack was lost
                log.info("request_already_handled", history=history)
                return Refused([])
            case "duplicate":
                reason = duplicate_reason(req, history, delivery)
                log.warning("duplicate_request_refused", reason=reason)
                return Refused([duplicate_dead_letter(req, reason, delivery)])
        return None


_ERROR_PATH = re.compile(r"- at `\$\.?([^`]*)`")


def refuse_undecodable_request(data: bytes, error: Exception, delivery: Delivery) -> list[ev.Event]:
    """A SimRequested that does not decode (`"render": {"width": 100000}`, `"episodes": "three"`)
    still names its run: the requester hears why on its run's own subjects, with the decoder's
    field path and limit, instead of waiting forever. Anything without a readable run id stays a
    dead letter only."""
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return []
    if not isinstance(raw, dict) or raw.get("type", "SimRequested") != "SimRequested":
        return []
    try:
        run_id = msgspec.convert(raw.get("run_id"), ev.RunId)
    except msgspec.ValidationError:
        return []
    where = _ERROR_PATH.search(str(error))
    return [ev.SimFailed.of(run_id, delivery.attempt, "bad_request", f"invalid SimRequested: {error}",
                            where.group(1) if where and where.group(1) else None)]
