"""ArtifactStored → (policy) → delete from the store → ArtifactDeleted.

Delete first, then announce (the bus publishes what the handler returns): if the process dies in
between, the next decision deletes again (a no-op on a missing object) and announces. ArtifactDeleted's id is the key, so two instances that
both decide to delete the same object produce one event.
"""
from __future__ import annotations

import time

from simreel.contract import events as ev
from simreel.runtime import log as logs
from simreel.transport.bus import Delivery
from simreel.store.base import ArtifactStore

from simreel.readmodels.artifact_index import Policy, ArtifactIndex


class Retention:
    """Decides and deletes; the ArtifactDeleted events it returns are published by the bus (or, for
    a periodic sweep, by simreel.transport.periodic) after the deletes. With `dry_run` it deletes nothing and
    returns what it would delete."""

    def __init__(self, store: ArtifactStore, index: ArtifactIndex, default: Policy,
                 per_session: dict[str, Policy] | None = None, *, dry_run: bool = False) -> None:
        self.store = store
        self.index = index
        self.default = default
        self.per_session = per_session or {}
        self.dry_run = dry_run

    def policy(self, session: str) -> Policy:
        return self.per_session.get(session, self.default)

    async def _delete(self, entry, session: str, reason: str) -> ev.ArtifactDeleted:
        deleted = ev.ArtifactDeleted(event_id=f"deleted-{entry.key}", run_id=entry.run_id, session=session,
                                     key=entry.key, bucket=entry.bucket, reason=reason)
        if not self.dry_run:
            await self.store.delete(entry.key)
            logs.get("retention", run_id=entry.run_id).info("artifact_deleted", key=entry.key, reason=reason)
        # The index is not changed here: it follows the log, where this fact lands once published. Were
        # it changed before, a failed publish would leave the object deleted and never announced.
        return deleted

    async def enforce(self, session: str, now: float | None = None) -> list[ev.ArtifactDeleted]:
        now = time.time() if now is None else now
        return [await self._delete(entry, session, reason)
                for entry, reason in self.index.victims(session, self.policy(session), now)]

    async def on_artifact_stored(self, stored: ev.ArtifactStored, delivery: Delivery) -> list[ev.Event]:
        self.index.apply(stored)
        return list(await self.enforce(stored.session))

    async def on_delete_requested(self, req: ev.DeleteRequested, delivery: Delivery) -> list[ev.Event]:
        """Delete every live artifact of the run (idempotent: already-deleted keys are not in the index)."""
        victims = sorted((e for e in self.index.entries.values() if e.run_id == req.run_id), key=lambda e: e.key)
        return [await self._delete(entry, entry.session, "manual") for entry in victims]

    async def sweep(self) -> list[ev.ArtifactDeleted]:
        out = []
        for session in sorted(self.index.sessions()):
            out += await self.enforce(session)
        return out
