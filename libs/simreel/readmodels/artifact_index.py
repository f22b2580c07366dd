"""The artifact index — a projection of ArtifactStored / ArtifactDeleted — and the retention policy decisions.

Pure and deterministic: the same events give the same index and the same victims, which is what lets
a restarted (or a second) retention instance make the same decisions from the event log.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable

from simreel.contract import events as ev

VIDEO_KINDS = ("video", "gif", "frames", "depth", "depth_preview", "segmentation", "segmentation_preview")


@dataclass(frozen=True)
class Policy:
    """`keep_worst` / `keep_failures` protect videos from the count rule besides the `keep_latest`: the
    videos of the episodes with the lowest returns, and of the latest episodes that ended `terminated`
    (e.g. keep the latest 20 and, besides them, the 50 worst by return). Age and byte limits still apply."""

    keep_latest: int = 0  # per kind of video, per session; 0 = unlimited
    max_age_s: float = 0.0  # 0 = unlimited
    max_total_bytes: int = 0  # per session; 0 = unlimited
    keep_worst: int = 0  # besides keep_latest, per kind of video, per session
    keep_failures: int = 0  # besides keep_latest, per kind of video, per session

    @property
    def active(self) -> bool:
        return bool(self.keep_latest or self.max_age_s or self.max_total_bytes)

    @property
    def uses_outcomes(self) -> bool:
        return bool(self.keep_latest and (self.keep_worst or self.keep_failures))


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
    episode: int | None = None


@dataclass(frozen=True)
class Outcome:
    episode_return: float
    terminated: bool


class ArtifactIndex:
    """Artifacts by key, and — for policies that protect failures or the worst returns — each episode's
    outcome by (run, episode), from EpisodeEnded."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.outcomes: dict[tuple[str, int], Outcome] = {}

    def apply(self, e: ev.Event) -> None:
        if isinstance(e, ev.ArtifactStored):
            self.entries[e.key] = Entry(e.key, e.bucket, e.session, e.run_id, e.kind, e.bytes, e.ts, e.episode)
        elif isinstance(e, ev.ArtifactDeleted):
            self.entries.pop(e.key, None)
        elif isinstance(e, ev.EpisodeEnded):
            self.outcomes[(e.run_id, e.episode)] = Outcome(e.episode_return, e.terminated)

    def apply_all(self, events: Iterable[ev.Event]) -> "ArtifactIndex":
        for e in events:
            self.apply(e)
        return self

    def sessions(self) -> set[str]:
        return {e.session for e in self.entries.values()}

    def snapshot(self) -> list[tuple]:
        out = sorted((e.key, e.session, e.kind, e.bytes, e.ts) for e in self.entries.values())
        if self.outcomes:
            out.append(sorted((r, ep, o.episode_return, o.terminated) for (r, ep), o in self.outcomes.items()))
        return out

    def outcome(self, e: Entry) -> Outcome | None:
        return None if e.episode is None else self.outcomes.get((e.run_id, e.episode))

    def _protected(self, older: list[Entry], policy: Policy) -> set[str]:
        """Keys the count rule spares besides the latest: the worst returns, the latest failures, and
        episode videos whose outcome is not in the index yet (decided once it is, by a later sweep)."""
        if not policy.uses_outcomes:
            return set()
        unknown = {e.key for e in older if e.episode is not None and self.outcome(e) is None}
        known = [(e, o) for e in older if (o := self.outcome(e)) is not None]
        worst = sorted(known, key=lambda p: (p[1].episode_return, p[0].ts, p[0].key))[:policy.keep_worst]
        failures = [e for e, o in known if o.terminated]
        failures = failures[max(0, len(failures) - policy.keep_failures):] if policy.keep_failures else []
        return unknown | {e.key for e, _ in worst} | {e.key for e in failures}

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
                older = of_kind[: max(0, len(of_kind) - policy.keep_latest)]
                spared = self._protected(older, policy)
                for e in older:
                    if e.key not in spared:
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
