"""Scene files that no run needs any more leave the scene-file store, after a grace period.

A run references the files its request names for as long as the run exists: while it is queued or
running, and afterwards while any of its artifacts is still stored (so **Run again** can reproduce it
from the store alone). A file is deleted once it has been unreferenced for the grace period, which
also covers a client that uploaded files and has not published its request yet. The index is a
fold of the event log, so every retention instance reaches the same verdicts; the clock of "unreferenced
since" starts when an instance first sees a file unreferenced (a restart only delays deletes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from simreel.contract import events as ev
from simreel.runtime import log as logs

RUN_ID = "scene-files"


@dataclass
class _Run:
    digests: frozenset[str]
    finished: bool = False
    artifacts: set[str] = field(default_factory=set)

    @property
    def live(self) -> bool:
        return not self.finished or bool(self.artifacts)


@dataclass
class SceneFileIndex:
    runs: dict[str, _Run] = field(default_factory=dict)
    unreferenced_since: dict[str, float] = field(default_factory=dict)

    def apply(self, e: ev.Event) -> None:
        if isinstance(e, ev.SimRequested):
            if e.files and e.run_id not in self.runs:
                self.runs[e.run_id] = _Run(frozenset(f.sha256 for f in e.files.values()))
            return
        run = self.runs.get(e.run_id)
        if run is None:
            return
        if isinstance(e, (ev.SimCompleted, ev.SimFailed)):
            run.finished = True
        elif isinstance(e, ev.ArtifactStored):
            run.artifacts.add(e.key)
        elif isinstance(e, ev.ArtifactDeleted):
            run.artifacts.discard(e.key)

    def referenced(self) -> set[str]:
        return {d for run in self.runs.values() if run.live for d in run.digests}

    def victims(self, stored: dict[str, int], now: float, grace_s: float) -> list[ev.SceneFileDeleted]:
        """The stored files to delete now: unreferenced for at least `grace_s`."""
        referenced = self.referenced()
        for d in list(self.unreferenced_since):
            if d in referenced or d not in stored:
                del self.unreferenced_since[d]
        out = []
        for digest, size in sorted(stored.items()):
            if digest in referenced:
                continue
            since = self.unreferenced_since.setdefault(digest, now)
            if now - since >= grace_s:
                out.append(ev.SceneFileDeleted(event_id=f"scenefile-deleted-{digest}", run_id=RUN_ID, sha256=digest,
                                               size=size, unreferenced_s=round(now - since, 3)))
        return out


class SceneFiles(Protocol):
    """What the sweep uses of the scene-file store (simreel.transport.scenefiles.SceneFileStore)."""

    async def list(self) -> dict[str, int]: ...

    async def delete(self, digest: str) -> None: ...


async def delete_unreferenced(index: SceneFileIndex, store: SceneFiles, grace_s: float) -> list[ev.SceneFileDeleted]:
    """Delete the scene files unreferenced for the grace period; their SceneFileDeleted, to announce
    after the deletes (a crash in between deletes again, a no-op, and announces)."""
    victims = index.victims(await store.list(), time.time(), grace_s)
    for e in victims:
        await store.delete(e.sha256)
        logs.get("retention").info("scene_file_deleted", sha256=e.sha256, size=e.size, unreferenced_s=e.unreferenced_s)
    return victims
