"""Staged files → the artifact store → ArtifactStored.

VideoAvailable, SceneSaved and TelemetryStaged point at staged files; SimCompleted carries the run
report. Keys are deterministic, so a redelivered message overwrites the same object with the same
bytes and announces the same fact (deduplicated by event id) — stored exactly once as seen from outside.
The staged file is deleted only after ArtifactStored is in the log: the uploader reacts to that event.

Runs with a keep rule (`outputs.keep`) stage each episode's videos as VideoHeld. A held video waits in
staging until it meets its episode's decision: EpisodeKept turns it into the VideoAvailable the
encoder would otherwise have announced (same event id), EpisodeDiscarded deletes the staged file. The
two may come in either order, and the handler of whichever is logged second finds the first in the
log (each looks the other up after its own event was logged), so no pairing is ever missed; when both
find each other, the release is announced twice under one id and JetStream keeps one.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import AsyncIterator, Protocol

import msgspec

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.runtime import log as logs
from simreel.transport.bus import Delivery
from simreel.contract.outputs import artifact_kind, video_file_name
from simreel.transport.staging import Staging
from simreel.store.base import ArtifactStore, StoreRejectedError, make_key

CONTENT_TYPES = {
    "mp4": "video/mp4",
    "gif": "image/gif",
    "png": "application/zip",
    "xml": "application/xml",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "mkv": "video/x-matroska",
}


def _loggable(url: str) -> str:
    """A URL for the logs: without its query, which for a presigned S3 URL holds the access key id and
    a signature that grants read access for days (the full URL is in the ArtifactStored event)."""
    return url.split("?", 1)[0]




class EventLog(Protocol):
    """What the uploader reads of the event log: a run's events on some subjects, oldest first."""

    def replay(self, filter_subject: str | list[str]) -> AsyncIterator[ev.Event]: ...


class Uploader:
    def __init__(self, store: ArtifactStore, staging: Staging, *, key_prefix: str = "simreel",
                 events: EventLog | None = None) -> None:
        self.store = store
        self.staging = staging
        self.prefix = key_prefix
        self.events = events

    # --- candidates of runs with a keep rule -------------------------------------------------------

    async def _logged(self, event_type: type, run_id: str) -> list[ev.Event]:
        if self.events is None:
            raise RuntimeError("this uploader has no event log to pair held videos with their decisions")
        return [e async for e in self.events.replay(subjects.of_run(event_type, run_id))]

    async def _decision(self, v: ev.VideoHeld) -> ev.EpisodeKept | ev.EpisodeDiscarded | None:
        for event_type in (ev.EpisodeKept, ev.EpisodeDiscarded):
            for d in await self._logged(event_type, v.run_id):
                if d.attempt == v.attempt and d.episode == v.episode:
                    return d
        return None

    async def _settle(self, decision: ev.EpisodeKept | ev.EpisodeDiscarded, held: list[ev.VideoHeld]) -> list[ev.Event]:
        log = logs.get("uploader", run_id=decision.run_id, episode=decision.episode)
        if isinstance(decision, ev.EpisodeKept):
            out = []
            for v in held:
                fields = msgspec.structs.asdict(v)
                fields["event_id"] = "video-" + v.event_id.removeprefix("held-")
                out.append(ev.VideoAvailable(**fields))
            log.info("candidate_kept", videos=len(out), reason=decision.reason[:200])
            return out
        for v in held:
            await self.staging.delete(v.staged)
        log.info("candidate_discarded", videos=len(held), reason=decision.reason[:200])
        return []

    async def on_video_held(self, v: ev.VideoHeld, delivery: Delivery) -> list[ev.Event]:
        """Released or deleted if its decision is in the log; else left in staging for the decision."""
        decision = await self._decision(v)
        return [] if decision is None else await self._settle(decision, [v])

    async def on_episode_decided(self, d: ev.EpisodeKept | ev.EpisodeDiscarded, delivery: Delivery) -> list[ev.Event]:
        held = [v for v in await self._logged(ev.VideoHeld, d.run_id) if v.episode == d.episode]
        for stale in (v for v in held if v.attempt < d.attempt):
            await self.staging.delete(stale.staged)  # held by an attempt that died before deciding it
        return await self._settle(d, [v for v in held if v.attempt == d.attempt])

    async def _store_staged(self, source: ev.Event, *, staged: str, session: str, episode: int | None, name: str,
                            kind: ev.ArtifactKind, fmt: str, sha256: str, camera: str | None = None) -> list[ev.Event]:
        run_id = source.run_id
        log = logs.get("uploader", run_id=run_id, episode=episode)
        key = make_key(self.prefix, session, run_id, episode, name)
        metadata = {"run_id": run_id, "episode": "all" if episode is None else str(episode), "sha256": sha256,
                    "kind": kind}
        try:
            async with self.staging.local(staged) as path:
                stored = await self.store.put(key, Path(path), content_type=CONTENT_TYPES[fmt], metadata=metadata)
        except StoreRejectedError as e:
            # Another delivery would be refused the same way: fail the run now, saying why.
            log.error("store_rejected", key=key, error=str(e))
            return [ev.StoreFailed(event_id=f"storefail-{key}", run_id=run_id, message=str(e), key=key)]
        except FileNotFoundError:
            # Redelivery after the staged file was already stored and removed: announce it again, as it
            # is in the store (past the duplicate window this is a new fact in the log, and retention
            # takes its size from it).
            stored = await self.store.stat(key, content_type=CONTENT_TYPES[fmt])
            if stored is None:
                return [ev.StoreFailed(event_id=f"storefail-{key}", run_id=run_id, message=f"staged file {staged} is gone "
                                       "and the artifact was never stored", key=key)]
            log.info("artifact_already_stored", key=key, bytes=stored.bytes)
        if sha256 and stored.sha256 and stored.sha256 != sha256:
            return [ev.StoreFailed(event_id=f"storefail-{key}", run_id=run_id, key=key,
                                   message=f"sha256 mismatch for {key}: staged {sha256}, stored {stored.sha256}")]
        done = ev.ArtifactStored(
            event_id=f"stored-{key}", run_id=run_id, kind=kind, format=fmt, episode=episode, camera=camera, session=session,
            bucket=stored.bucket, key=stored.key, url=stored.url, path=stored.path, expires_at=stored.expires_at,
            bytes=stored.bytes, sha256=stored.sha256 or sha256, content_type=stored.content_type,
            source_event_id=source.event_id, staged=staged)
        log.info("artifact_stored", kind=kind, type=fmt, key=key, url=_loggable(stored.url), bytes=stored.bytes)
        return [done]

    async def on_video_available(self, v: ev.VideoAvailable, delivery: Delivery) -> list[ev.Event]:
        return await self._store_staged(v, staged=v.staged, session=v.session, episode=v.episode,
                                        name=video_file_name(v.episode, v.format, v.camera, v.stream), camera=v.camera,
                                        kind=artifact_kind(v.stream, v.format),
                                        fmt=v.format, sha256=v.sha256)

    async def on_scene_saved(self, s: ev.SceneSaved, delivery: Delivery) -> list[ev.Event]:
        return await self._store_staged(s, staged=s.staged, session=s.session, episode=None, name="scene.xml",
                                        kind="scene", fmt="xml", sha256=s.sha256)

    async def on_telemetry_staged(self, t: ev.TelemetryStaged, delivery: Delivery) -> list[ev.Event]:
        return await self._store_staged(t, staged=t.staged, session=t.session, episode=None, name="telemetry.jsonl",
                                        kind="telemetry", fmt="jsonl", sha256=t.sha256)

    async def on_artifact_stored(self, a: ev.ArtifactStored, delivery: Delivery) -> list[ev.Event]:
        """The object is stored and the log says so: its staged copy is no longer needed. (Deleting it
        before the fact is in the log would lose the file if the announcement failed.)"""
        if a.staged:
            await self.staging.delete(a.staged)
        return []

    async def on_sim_completed(self, c: ev.SimCompleted, delivery: Delivery) -> list[ev.Event]:
        key = make_key(self.prefix, c.session, c.run_id, None, "report.json")
        with tempfile.TemporaryDirectory(prefix="simreel-report-") as d:
            p = Path(d) / "report.json"
            p.write_text(json.dumps(c.report, indent=2, sort_keys=True, default=str), encoding="utf-8")
            try:
                stored = await self.store.put(key, p, content_type=CONTENT_TYPES["json"],
                                              metadata={"run_id": c.run_id, "kind": "report"})
            except StoreRejectedError as e:
                logs.get("uploader", run_id=c.run_id).error("store_rejected", key=key, error=str(e))
                return [ev.StoreFailed(event_id=f"storefail-{key}", run_id=c.run_id, message=str(e), key=key)]
        logs.get("uploader", run_id=c.run_id).info("artifact_stored", kind="report", key=key,
                                                    url=_loggable(stored.url))
        return [ev.ArtifactStored(
            event_id=f"stored-{key}", run_id=c.run_id, kind="report", format="json", episode=None, session=c.session,
            bucket=stored.bucket, key=stored.key, url=stored.url, path=stored.path, expires_at=stored.expires_at,
            bytes=stored.bytes, sha256=stored.sha256, content_type=stored.content_type, source_event_id=c.event_id)]
