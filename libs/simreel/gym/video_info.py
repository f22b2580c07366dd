"""What a recorder tells its caller about each video: a typed record, not a string-keyed dict.

Recorders used to hand out plain dicts (`env.videos[0]["url"]`); code written that way keeps working
(`info["url"]`, `info.get("env")`), while new code gets attributes, types and completion in editors.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

VideoStatus = Literal["completed", "failed", "timeout", "recording", "pending", "discarded"]


@dataclass(frozen=True, slots=True)
class RecordedVideo:
    name: str | None
    path: str | None  # the file in video_folder, or None when the store is not local to this process
    url: str | None
    run_id: str
    frames: int
    fps: float
    status: str
    error: str | None = None
    telemetry_url: str | None = None
    report_url: str | None = None
    store_latency_s: float | None = None
    episode: int | None = None  # episode-triggered clips
    step: int | None = None  # step-triggered clips
    env: int | str | None = None  # vector recorders: the sub-env (per_env) or the grid
    kept: bool | None = None  # with keep=: whether the rule kept it (None without keep=)
    reason: str | None = None  # with keep=: what decided it

    # --- the mapping view older callers use -------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in _FIELDS else default

    def keys(self) -> tuple[str, ...]:
        return _FIELDS

    def __contains__(self, key: object) -> bool:
        return key in _FIELDS

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = tuple(f.name for f in dataclasses.fields(RecordedVideo))
