"""Retention index — a projection of ArtifactStored / ArtifactDeleted — and the policy decisions.

Pure and deterministic: the same events give the same index and the same victims, which is what lets
a restarted (or a second) retention instance make the same decisions from the event log.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable

from simreel import events as ev

VIDEO_KINDS = ("video", "gif", "frames", "depth", "depth_preview", "segmentation", "segmentation_preview")


@dataclass(frozen=True)
class Policy:
    keep_latest: int = 0  # per kind of video, per session; 0 = unlimited
    max_age_s: float = 0.0  # 0 = unlimited
    max_total_bytes: int = 0  # per session; 0 = unlimited

    @property
    def active(self) -> bool:
        return bool(self.keep_latest or self.max_age_s or self.max_total_bytes)


def policies_from_json(default: Policy, raw: str) -> dict[str, Policy]:
    """Per-session overrides from their JSON text (Settings.retention_policies)."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
        return {s: Policy(**{**default.__dict__, **p}) for s, p in data.items()}
    except (ValueError, TypeError) as e:
        raise ValueError(f"SIMREEL_RETENTION_POLICIES is not valid: {e}") from None


@dataclass(frozen=True)
class Entry:
    key: str
    bucket: str
    session: str
    run_id: str
    kind: str
    bytes: int
    ts: float


class RetentionIndex:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def apply(self, e: ev.Event) -> None:
        if isinstance(e, ev.ArtifactStored):
            self.entries[e.key] = Entry(e.key, e.bucket, e.session, e.run_id, e.kind, e.bytes, e.ts)
        elif isinstance(e, ev.ArtifactDeleted):
            self.entries.pop(e.key, None)

    def apply_all(self, events: Iterable[ev.Event]) -> "RetentionIndex":
        for e in events:
            self.apply(e)
        return self

    def sessions(self) -> set[str]:
        return {e.session for e in self.entries.values()}

    def snapshot(self) -> list[tuple]:
        return sorted((e.key, e.session, e.kind, e.bytes, e.ts) for e in self.entries.values())

    def digest(self) -> str:
        """A fingerprint of the index: two instances with the same digest make the same decisions."""
        return hashlib.sha256(json.dumps(self.snapshot()).encode()).hexdigest()[:16]

    def victims(self, session: str, policy: Policy, now: float) -> list[tuple[Entry, str]]:
        """What to delete in a session, oldest first, each with its reason (count / age / bytes)."""
        if not policy.active:
            return []
        live = sorted((e for e in self.entries.values() if e.session == session), key=lambda e: (e.ts, e.key))
        chosen: dict[str, tuple[Entry, str]] = {}
        if policy.max_age_s:
            for e in live:
                if now - e.ts > policy.max_age_s:
                    chosen[e.key] = (e, "age")
        if policy.keep_latest:
            for kind in VIDEO_KINDS:
                of_kind = [e for e in live if e.kind == kind and e.key not in chosen]
                for e in of_kind[: max(0, len(of_kind) - policy.keep_latest)]:
                    chosen[e.key] = (e, "count")
        if policy.max_total_bytes:
            remaining = [e for e in live if e.key not in chosen]
            total = sum(e.bytes for e in remaining)
            for e in remaining:  # oldest first: least recently completed goes first
                if total <= policy.max_total_bytes:
                    break
                chosen[e.key] = (e, "bytes")
                total -= e.bytes
        return sorted(chosen.values(), key=lambda p: (p[0].ts, p[0].key))
