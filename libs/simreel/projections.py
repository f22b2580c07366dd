"""Read models built by folding events: a run's status, the list of runs.

The event log is the source of truth; these are derived on demand (client.wait, `simreel runs`) and
can always be rebuilt by replaying EVENTS.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from . import events as ev


@dataclass
class RunState:
    run_id: str
    scene: str = ""
    session: str = ""
    requested_at: float | None = None
    attempt: int = 0
    episodes: int = 0
    episodes_ended: int = 0
    frames_per_episode: int = 0
    videos: dict[str, ev.VideoAvailable] = field(default_factory=dict)
    artifacts: dict[str, ev.ArtifactStored] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    completed: ev.SimCompleted | None = None
    error: str | None = None
    error_code: str | None = None
    gl_renderer: str = ""
    updated_at: float = 0.0

    @property
    def status(self) -> str:
        if self.error:
            return "failed"
        if self.completed and len(self.artifacts) >= self.completed.expected_artifacts:
            return "completed"
        if self.completed:
            return "storing"
        if self.attempt:
            return "running"
        return "queued"

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")

    def apply(self, e: ev.Event) -> None:
        self.updated_at = max(self.updated_at, e.ts)
        if isinstance(e, ev.SimRequested):
            self.scene = e.scene if len(e.scene) < 80 else "inline MJCF"
            self.session = e.session
            self.requested_at = e.ts
            self.episodes = e.episodes
        elif isinstance(e, ev.SimStarted):
            if e.attempt >= self.attempt:
                if e.attempt > self.attempt:
                    self.episodes_ended = 0
                self.attempt = e.attempt
                self.episodes = e.episodes
                self.session = e.session
                self.frames_per_episode = e.frames_per_episode[0] if e.frames_per_episode else 0
                self.gl_renderer = e.gl_renderer
                if not self.scene:
                    self.scene = e.scene
        elif isinstance(e, ev.EpisodeEnded):
            if e.attempt == self.attempt:
                self.episodes_ended += 1
        elif isinstance(e, ev.VideoAvailable):
            self.videos[f"{e.episode}:{e.format}:{e.camera}"] = e
        elif isinstance(e, ev.ArtifactStored):
            self.artifacts[e.key] = e
        elif isinstance(e, ev.ArtifactDeleted):
            self.deleted.add(e.key)
        elif isinstance(e, ev.SimCompleted):
            self.completed = e
        elif isinstance(e, ev.SimFailed):
            self.error, self.error_code = e.message, e.code
        elif isinstance(e, ev.EncodeFailed):
            # A failure of an attempt that was superseded by a retry does not fail the run.
            if e.attempt >= self.attempt:
                self.error, self.error_code = e.message, e.code
        elif isinstance(e, ev.StoreFailed):
            self.error, self.error_code = e.message, e.code
        elif isinstance(e, ev.DeadLettered):
            self.error, self.error_code = f"{e.service}: {e.reason}", "dead_lettered"


def fold_runs(events: Iterable[ev.Event]) -> dict[str, RunState]:
    runs: dict[str, RunState] = {}
    for e in events:
        rid = e.run_id
        if isinstance(e, ev.DeadLettered) and rid == "unknown":
            continue
        runs.setdefault(rid, RunState(rid)).apply(e)
    return runs
