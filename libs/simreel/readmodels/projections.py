"""Read models built by folding events: a run's status, the list of runs.

The event log is the source of truth; these are derived on demand (client.wait, `simreel runs`) and
can always be rebuilt by replaying EVENTS. A run's derived figures (artifacts stored and live,
expected videos and artifacts, finished, the latest attempt) are computed here only: the CLI, the
Client and the ui's JSON read them, and the browser shows them.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Iterable

from simreel.contract import events as ev
from simreel.contract.scene_name import scene_name
from simreel.contract.outputs import episode_videos, video_outputs


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
    failed_in: str | None = None  # the service whose event failed the run (its log has the details)
    gl_renderer: str = ""
    gl_backend: str = ""
    updated_at: float = 0.0
    request: ev.SimRequested | None = None
    fps: int = 0
    episode_ends: dict[int, ev.EpisodeEnded] = field(default_factory=dict)
    deletions: dict[str, ev.ArtifactDeleted] = field(default_factory=dict)
    delete_requested: ev.DeleteRequested | None = None
    # Keep rules: the current attempt's decisions by episode, and how many videos an episode has.
    kept: dict[int, ev.EpisodeKept] = field(default_factory=dict)
    discarded: dict[int, ev.EpisodeDiscarded] = field(default_factory=dict)
    videos_per_episode: int = 0
    started: ev.SimStarted | None = None  # the latest attempt's

    @property
    def latest_attempt(self) -> int:
        """The newest attempt started (0: none yet); older attempts' facts no longer count."""
        return self.attempt

    @property
    def stored_artifacts(self) -> int:
        """Artifacts ever stored (deleted ones too): what completion counts."""
        return len(self.artifacts)

    @property
    def live_artifact_count(self) -> int:
        """Artifacts stored and not deleted since: what a listing shows and `simreel rm` deletes."""
        return len(self.live_artifacts)

    @property
    def expected_videos(self) -> int | None:
        """VideoAvailable events the run will have: from its latest start (else its request), less the
        videos of the episodes discarded by a keep rule; None before either is known."""
        source = self.started or self.request
        if source is None:
            return None
        return video_outputs(source) - self.videos_per_episode * len(self.discarded)

    @property
    def expected_now(self) -> int | None:
        """Artifacts the run will have, knowing the decisions so far: SimCompleted's count (every
        candidate's videos) less the videos of the episodes discarded."""
        if self.completed is None:
            return None
        return self.completed.expected_artifacts - self.videos_per_episode * len(self.discarded)

    @property
    def status(self) -> str:
        if self.error:
            return "failed"
        if self.completed and self.stored_artifacts >= self.expected_now:
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
            self.scene = scene_name(e.scene)
            self.session = e.session
            self.requested_at = e.ts
            self.episodes = e.episodes
            self.request = e
        elif isinstance(e, ev.SimStarted):
            if e.attempt >= self.attempt:
                if e.attempt > self.attempt:
                    self.episodes_ended = 0
                    self.episode_ends.clear()
                    self.kept.clear()
                    self.discarded.clear()
                self.attempt = e.attempt
                self.started = e
                self.episodes = e.episodes
                self.session = e.session
                self.frames_per_episode = e.frames_per_episode[0] if e.frames_per_episode else 0
                self.gl_renderer = e.gl_renderer
                self.gl_backend = e.gl_backend
                self.fps = e.fps
                self.videos_per_episode = episode_videos(e)
                if not self.scene:
                    self.scene = e.scene
        elif isinstance(e, ev.EpisodeEnded):
            if e.attempt == self.attempt and e.episode not in self.episode_ends:
                self.episodes_ended += 1
                self.episode_ends[e.episode] = e
        elif isinstance(e, (ev.EpisodeKept, ev.EpisodeDiscarded)):
            if e.attempt == self.attempt:
                (self.kept if isinstance(e, ev.EpisodeKept) else self.discarded)[e.episode] = e
        elif isinstance(e, ev.VideoAvailable):
            self.videos[f"{e.episode}:{e.format}:{e.camera}" + (f":{e.stream}" if e.stream != "rgb" else "")] = e
        elif isinstance(e, ev.ArtifactStored):
            self.artifacts[e.key] = e
        elif isinstance(e, ev.ArtifactDeleted):
            self.deleted.add(e.key)
            self.deletions[e.key] = e
        elif isinstance(e, ev.DeleteRequested):
            self.delete_requested = e
        elif isinstance(e, ev.SimCompleted):
            self.completed = e
        elif isinstance(e, ev.SimFailed):
            self.error, self.error_code, self.failed_in = e.message, e.code, "simulator"
        elif isinstance(e, ev.EncodeFailed):
            # A failure of an attempt that was superseded by a retry does not fail the run.
            if e.attempt >= self.attempt:
                self.error, self.error_code, self.failed_in = e.message, e.code, "encoder"
        elif isinstance(e, ev.StoreFailed):
            self.error, self.error_code, self.failed_in = e.message, e.code, "uploader"
        elif isinstance(e, ev.DeadLettered):
            self.error, self.error_code, self.failed_in = f"{e.service}: {e.reason}", "dead_lettered", e.service


    # --- derived figures, for listings (simreel ui) ------------------------------------------------

    @property
    def seeds(self) -> list[int]:
        r = self.request
        if r is None:
            return sorted(e.seed for e in self.episode_ends.values())
        return list(r.seeds) if r.seeds else [r.seed + i for i in range(r.episodes)]

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.request.tags) if self.request else {}

    @property
    def mean_return(self) -> float | None:
        ends = self.episode_ends.values()
        return sum(e.episode_return for e in ends) / len(ends) if ends else None

    @property
    def warnings(self) -> list[str]:
        """Blank / frozen episodes and encoder warnings, one line each, without repeats."""
        out: list[str] = []
        for e in sorted(self.episode_ends.values(), key=lambda e: e.episode):
            out += [f"episode {e.episode}: {w}" for w in e.warnings]
            if (e.blank or e.frozen) and not e.warnings:
                out.append(f"episode {e.episode}: {'blank' if e.blank else 'frozen'} frames")
        for v in self.videos.values():
            out += v.warnings
        return list(dict.fromkeys(out))

    @property
    def wall_s(self) -> float | None:
        """From request to the last event so far (to the end, once finished)."""
        return self.updated_at - self.requested_at if self.requested_at else None

    @property
    def live_artifacts(self) -> list[ev.ArtifactStored]:
        return [a for k, a in self.artifacts.items() if k not in self.deleted]

    def summary(self) -> dict[str, Any]:
        """One row of a runs listing, JSON-ready."""
        return {
            "run_id": self.run_id, "status": self.status, "scene": self.scene, "session": self.session,
            "episodes": self.episodes, "episodes_ended": self.episodes_ended, "seeds": self.seeds,
            "tags": self.tags, "created": self.requested_at, "updated": self.updated_at, "wall_s": self.wall_s,
            "artifacts": self.live_artifact_count, "stored_artifacts": self.stored_artifacts,
            "deleted": len(self.deleted), "expected_artifacts": self.expected_now,
            "expected_videos": self.expected_videos, "finished": self.finished, "attempt": self.latest_attempt,
            "kept": len(self.kept), "discarded": len(self.discarded),
            "videos": len(self.videos), "mean_return": self.mean_return, "warnings": self.warnings,
            "error": self.error, "error_code": self.error_code,
        }


# Events about live recorders: their `run_id` is a recorder id, not a run.
RECORDER_EVENTS = (ev.RecorderAnnounced, ev.CaptureControlRequested, ev.CaptureControlApplied,
                   ev.KeepRuleRequested, ev.KeepRuleApplied)


def fold_runs(events: Iterable[ev.Event]) -> dict[str, RunState]:
    runs: dict[str, RunState] = {}
    for e in events:
        rid = e.run_id
        if isinstance(e, ev.DeadLettered) and rid == "unknown" or isinstance(e, RECORDER_EVENTS):
            continue
        runs.setdefault(rid, RunState(rid)).apply(e)
    return runs


@dataclass(frozen=True)
class RunFilter:
    """What a runs listing asks for; empty fields match everything. `tag` is `key` or `key=value`."""

    session: str = ""
    status: str = ""
    scene: str = ""
    tag: str = ""
    keep: str = ""  # "kept" / "discarded": runs with an episode a keep rule kept / discarded

    def matches(self, r: RunState) -> bool:
        if self.keep == "kept" and not r.kept or self.keep == "discarded" and not r.discarded:
            return False
        if self.session and r.session != self.session:
            return False
        if self.status and r.status != self.status:
            return False
        if self.scene and self.scene.lower() not in r.scene.lower():
            return False
        if self.tag:
            k, sep, v = self.tag.partition("=")
            tags = r.tags
            if k not in tags or (sep and tags[k] != v):
                return False
        return True


class RunsIndex:
    """Every run, kept current event by event, listed newest first with filters and paging.

    The order is kept incrementally (a sorted key list) so a page of 10,000 runs costs a slice, not a
    sort; only filtered listings walk the runs.
    """

    def __init__(self) -> None:
        self.runs: dict[str, RunState] = {}
        self._order: list[tuple[float, str]] = []  # (-created, run_id), ascending = newest first
        self._key: dict[str, tuple[float, str]] = {}

    def apply(self, e: ev.Event) -> RunState | None:
        rid = e.run_id
        if isinstance(e, ev.DeadLettered) and rid == "unknown" or isinstance(e, RECORDER_EVENTS):
            return None
        state = self.runs.get(rid)
        if state is None:
            state = self.runs[rid] = RunState(rid)
        state.apply(e)
        key = (-(state.requested_at or state.updated_at), rid)
        old = self._key.get(rid)
        if old != key:
            if old is not None:
                del self._order[bisect.bisect_left(self._order, old)]
            bisect.insort(self._order, key)
            self._key[rid] = key
        return state

    def page(self, flt: RunFilter = RunFilter(), *, offset: int = 0, limit: int = 50) -> tuple[int, list[RunState]]:
        """(how many match, the runs of this page), newest first."""
        if flt == RunFilter():
            return len(self._order), [self.runs[rid] for _, rid in self._order[offset:offset + limit]]
        matching = [rid for _, rid in self._order if flt.matches(self.runs[rid])]
        return len(matching), [self.runs[rid] for rid in matching[offset:offset + limit]]

    def facets(self) -> dict[str, list[str]]:
        """The values the filters can take, for the listing's drop-downs."""
        sessions, scenes, tags = set(), set(), set()
        for r in self.runs.values():
            sessions.add(r.session)
            scenes.add(r.scene)
            tags.update(f"{k}={v}" for k, v in r.tags.items())
        return {"sessions": sorted(s for s in sessions if s), "scenes": sorted(s for s in scenes if s),
                "tags": sorted(tags)[:500], "statuses": ["queued", "running", "storing", "completed", "failed"]}


@dataclass
class RecorderState:
    """A live recorder as its latest announcement says, with the control requests sent to it and
    the ones it applied (at which episode boundary)."""

    recorder_id: str
    announced: ev.RecorderAnnounced | None = None
    requested: list[ev.CaptureControlRequested] = field(default_factory=list)
    applied: list[ev.CaptureControlApplied] = field(default_factory=list)
    keep_requested: list[ev.KeepRuleRequested] = field(default_factory=list)
    keep_applied: list[ev.KeepRuleApplied] = field(default_factory=list)

    def apply(self, e: ev.Event) -> None:
        if isinstance(e, ev.RecorderAnnounced):
            if self.announced is None or e.ts >= self.announced.ts:
                self.announced = e
        elif isinstance(e, ev.CaptureControlRequested):
            self.requested = (self.requested + [e])[-20:]
        elif isinstance(e, ev.CaptureControlApplied):
            self.applied = (self.applied + [e])[-20:]
        elif isinstance(e, ev.KeepRuleRequested):
            self.keep_requested = (self.keep_requested + [e])[-20:]
        elif isinstance(e, ev.KeepRuleApplied):
            self.keep_applied = (self.keep_applied + [e])[-20:]

    @property
    def pending(self) -> list[ev.CaptureControlRequested]:
        done = {a.request_event_id for a in self.applied}
        return [r for r in self.requested if r.event_id not in done]

    def summary(self) -> dict[str, Any]:
        a = self.announced
        return {
            "recorder_id": self.recorder_id, "state": a.state if a else "unknown", "session": a.session if a else "",
            "env_id": a.env_id if a else "", "trigger": a.trigger if a else "",
            "episodes_seen": a.episodes_seen if a else 0, "videos_recorded": a.videos_recorded if a else 0,
            "recording_next": a.recording_next if a else False, "cadence": a.cadence if a else None,
            "updated": a.ts if a else None,
            "pending": [{"action": r.action, "every": r.every, "event_id": r.event_id} for r in self.pending],
            "applied": [{"action": x.action, "every": x.every, "episode": x.episode, "ts": x.ts}
                        for x in self.applied[-5:]],
            "keep_pending": [r.event_id for r in self.keep_requested
                             if r.event_id not in {a.request_event_id for a in self.keep_applied}],
            "keep_applied": [{"rule": x.rule, "episode": x.episode, "ts": x.ts} for x in self.keep_applied[-5:]],
        }


def fold_recorder(recorders: dict[str, RecorderState], e: ev.Event) -> RecorderState | None:
    """Apply a recorder event to the map of recorders; None for any other event."""
    if not isinstance(e, RECORDER_EVENTS):
        return None
    state = recorders.get(e.run_id)
    if state is None:
        state = recorders[e.run_id] = RecorderState(e.run_id)
    state.apply(e)
    return state
