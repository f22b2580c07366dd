"""Pure decisions about a request, before any simulation: limits, seeds, frame counts.

Kept free of NATS and GL so it is unit-tested as plain functions and shared by the handler.
"""
from __future__ import annotations

from simreel.contract import events as ev
from simreel.runtime.config import Limits
from simreel.sim.rollout import FrameSchedule

DEFAULT_DURATION_S = 5.0


class LimitExceeded(ValueError):
    def __init__(self, field: str, value, limit) -> None:
        super().__init__(f"{field}={value} is over the configured limit {limit}")
        self.field = field


def check_scene_files(req: ev.SimRequested, limits: Limits) -> None:
    """A scene's files against the per-file and per-scene caps (SIMREEL_MAX_SCENE_FILE_BYTES,
    SIMREEL_MAX_SCENE_BYTES), before anything is fetched."""
    for path, f in sorted(req.files.items()):
        if f.size > limits.max_scene_file_bytes:
            raise LimitExceeded(f"files[{path!r}].size", f.size, limits.max_scene_file_bytes)
    total = sum(f.size for f in {f.sha256: f for f in req.files.values()}.values())
    if total > limits.max_scene_bytes:
        raise LimitExceeded("files (total size)", total, limits.max_scene_bytes)


def check_limits(req: ev.SimRequested, limits: Limits) -> None:
    r = req.render
    checks = [
        ("render.width", r.width, limits.max_width),
        ("render.height", r.height, limits.max_height),
        ("render.fps", r.fps, limits.max_fps),
        ("episodes", req.episodes, limits.max_episodes),
        ("duration_s", req.duration_s or 0, limits.max_duration_s),
        ("max_steps", req.max_steps or 0, limits.max_steps),
    ]
    for field, value, limit in checks:
        if value > limit:
            raise LimitExceeded(field, value, limit)
    if req.seeds is not None and len(req.seeds) != req.episodes:
        raise LimitExceeded("seeds", f"{len(req.seeds)} seeds", f"one per episode ({req.episodes})")


def episode_seeds(req: ev.SimRequested) -> list[int]:
    return list(req.seeds) if req.seeds is not None else [req.seed + i for i in range(req.episodes)]


def duration_of(req: ev.SimRequested) -> float | None:
    if req.duration_s is None and req.max_steps is None:
        return DEFAULT_DURATION_S
    return req.duration_s


def frame_count(duration_s: float | None, max_steps: int | None, dt: float, fps: int) -> int:
    """Frames at t = k/fps for k = 0..n-1 — the same rule the render loop uses (FrameSchedule)."""
    return FrameSchedule.of(dt, fps).plan(duration_s, max_steps)[0]
