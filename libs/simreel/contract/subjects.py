"""Subject names and JetStream stream / consumer settings, in one place.

Per-run events end with the run id (`simreel.evt.<noun>.<verb>.<run>`), so `simreel.evt.*.*.<run>`
selects one run's whole story from the EVENTS stream.
"""
from __future__ import annotations

from dataclasses import dataclass

from nats.js import api

from simreel.contract import events as ev

EVENTS_STREAM = "EVENTS"
FRAMES_STREAM = "FRAMES"
STAGING_BUCKET = "simreel-staging"
SCENE_FILES_BUCKET = "simreel-scene-files"

ALL_EVENTS = "simreel.evt.>"
ALL_FRAMES = "simreel.frames.>"
ARTIFACT_EVENTS = "simreel.evt.artifact.>"  # stored and deleted: what the artifact index folds
SIM_REQUESTED = "simreel.evt.sim.requested"
DEAD_LETTER_PREFIX = "simreel.evt.dead"
FRAMES_PREFIX = "simreel.frames"

_PER_RUN = {
    ev.SimStarted: "simreel.evt.sim.started",
    ev.SimCompleted: "simreel.evt.sim.completed",
    ev.SimFailed: "simreel.evt.sim.failed",
    ev.EpisodeEnded: "simreel.evt.episode.ended",
    ev.SceneSaved: "simreel.evt.scene.saved",
    ev.VideoAvailable: "simreel.evt.video.available",
    ev.VideoHeld: "simreel.evt.video.held",
    ev.EpisodeKept: "simreel.evt.episode.kept",
    ev.EpisodeDiscarded: "simreel.evt.episode.discarded",
    ev.TelemetryStaged: "simreel.evt.telemetry.staged",
    ev.EncodeFailed: "simreel.evt.encode.failed",
    ev.ArtifactStored: "simreel.evt.artifact.stored",
    ev.StoreFailed: "simreel.evt.store.failed",
    ev.ArtifactDeleted: "simreel.evt.artifact.deleted",
    ev.DeleteRequested: "simreel.evt.delete.requested",
    ev.SceneFileDeleted: "simreel.evt.scenefile.deleted",
    # Live recorders: the "run" is the recorder id.
    ev.RecorderAnnounced: "simreel.evt.recorder.announced",
    ev.CaptureControlRequested: "simreel.evt.recorder.control",
    ev.CaptureControlApplied: "simreel.evt.recorder.applied",
    ev.KeepRuleRequested: "simreel.evt.recorder.keep",
    ev.KeepRuleApplied: "simreel.evt.recorder.keepapplied",
}


def subject_for(event: ev.Event) -> str:
    if isinstance(event, ev.SimRequested):
        return SIM_REQUESTED
    if isinstance(event, ev.DeadLettered):
        return f"{DEAD_LETTER_PREFIX}.{event.service}.{event.run_id}"
    return f"{_PER_RUN[type(event)]}.{event.run_id}"


def prefix_of(event_type: type[ev.Event]) -> str:
    return _PER_RUN[event_type]


def of_run(event_type: type[ev.Event], run_id: str) -> str:
    """Where the events of one type for one run are: `of_run(ev.SimStarted, "r1")`."""
    return f"{_PER_RUN[event_type]}.{run_id}"


def all_of(event_type: type[ev.Event]) -> str:
    """Every run's events of one type: `all_of(ev.VideoAvailable)`."""
    return f"{_PER_RUN[event_type]}.*"


def run_events(run_id: str) -> str:
    return f"simreel.evt.*.*.{run_id}"


def run_artifacts(run_id: str) -> str:
    """A run's ArtifactStored and ArtifactDeleted."""
    return f"simreel.evt.artifact.*.{run_id}"


def recorder_control(recorder_id: str) -> str:
    """Where a live recorder listens for CaptureControlRequested."""
    return f"{_PER_RUN[ev.CaptureControlRequested]}.{recorder_id}"


def recorder_keep(recorder_id: str) -> str:
    """Where a live recorder listens for KeepRuleRequested."""
    return f"{_PER_RUN[ev.KeepRuleRequested]}.{recorder_id}"


RECORDERS_ANNOUNCED = "simreel.evt.recorder.announced.*"


def frames(run_id: str, attempt: int, episode: int) -> str:
    return f"{FRAMES_PREFIX}.{run_id}.{attempt}.{episode}"


def run_frames(run_id: str, attempt: int | str | None = None) -> str:
    """Every frame of a run, or of one attempt of it."""
    return f"{FRAMES_PREFIX}.{run_id}.{attempt}.>" if attempt else f"{FRAMES_PREFIX}.{run_id}.>"


@dataclass(frozen=True, slots=True)
class FramesSubject:
    run_id: str
    attempt: str  # as written in the subject: a producer's typo must not crash the reader
    episode: str


def parse_frames(subject: str) -> FramesSubject | None:
    """`simreel.frames.<run>.<attempt>.<episode>` → its parts; None for anything else."""
    parts = subject.split(".")
    if len(parts) != 5 or ".".join(parts[:2]) != FRAMES_PREFIX:
        return None
    return FramesSubject(parts[2], parts[3], parts[4])


def events_stream(max_age_s: float = 30 * 86400, replicas: int = 1) -> api.StreamConfig:
    return api.StreamConfig(
        name=EVENTS_STREAM,
        subjects=[ALL_EVENTS],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        max_age=max_age_s,
        duplicate_window=120.0,
        num_replicas=replicas,
    )


def frames_stream(max_bytes: int = 8 * 1024**3, replicas: int = 1) -> api.StreamConfig:
    return api.StreamConfig(
        name=FRAMES_STREAM,
        subjects=[ALL_FRAMES],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        max_age=3600.0,
        max_bytes=max_bytes,
        duplicate_window=120.0,
        num_replicas=replicas,
        # When full, refuse new frames (the simulator sees it and fails the run) instead of
        # silently dropping frames an encoder still needs.
        discard=api.DiscardPolicy.NEW,
    )


# Work-claiming durable consumers: one shared name per service, so replicas load-balance.
WORK_CONSUMERS: dict[str, list[str]] = {
    "simulator": [SIM_REQUESTED],
    "encoder": [all_of(ev.SimStarted)],
    "uploader": [
        all_of(ev.VideoAvailable),
        # Candidates of runs with a keep rule: released or deleted when their episode's decision meets them.
        all_of(ev.VideoHeld),
        all_of(ev.EpisodeKept),
        all_of(ev.EpisodeDiscarded),
        all_of(ev.SceneSaved),
        all_of(ev.TelemetryStaged),
        all_of(ev.SimCompleted),
        # Once a staged file's ArtifactStored is in the log, the staged copy is deleted.
        all_of(ev.ArtifactStored),
    ],
    "retention": [all_of(ev.ArtifactStored), all_of(ev.DeleteRequested)],
}
