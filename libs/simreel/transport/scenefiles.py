"""The scene-file store: a scene's meshes, textures and includes, stored once by content on the bus.

Files travel beside a request, not inside it: a NATS message is capped by the server's `max_payload`
(1 MiB by default), and a robot's meshes are often tens of MiB. Each file is an object of the
JetStream object store bucket `simreel-scene-files`, named by its lower-case hex SHA-256; a request
names it by its path in the scene's tree and that digest (`events.SceneFile`). A client uploads only
the digests the bucket lacks, so a second run of the same robot uploads nothing. Any NATS client with
an object-store API can do the same (docs/events.md shows it with plain nats-py).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import nats.errors
import nats.js.errors
from nats.js import api

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.transport.bus import Bus
from simreel.sim.package import sha256_file


class SceneFileError(Exception):
    """The store cannot give a file as named: missing, or its bytes do not match its digest."""


@dataclass(frozen=True)
class UploadReport:
    uploaded_files: int
    uploaded_bytes: int
    present_files: int  # already in the store: not uploaded again


class SceneFileStore:
    def __init__(self, bus: Bus, bucket: str = subjects.SCENE_FILES_BUCKET) -> None:
        self.bus = bus
        self.bucket = bucket
        self._store = None

    async def _os(self):
        if self._store is None:
            try:
                self._store = await self._open()
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError, nats.js.errors.APIError) as e:
                raise SceneFileError(
                    f"the scene-file store (JetStream object store {self.bucket!r}) is not reachable: "
                    f"{type(e).__name__}{f': {e}' if str(e) else ''} (is JetStream enabled on this NATS server?)"
                ) from None
        return self._store

    async def _open(self):
        try:
            return await self.bus.js.object_store(self.bucket)
        except nats.js.errors.NotFoundError:
            try:
                return await self.bus.js.create_object_store(
                    self.bucket, config=api.ObjectStoreConfig(storage=api.StorageType.FILE, replicas=self.bus.replicas,
                                                              description="simreel scene files by SHA-256"))
            except nats.js.errors.BadRequestError:  # created meanwhile by another client
                return await self.bus.js.object_store(self.bucket)

    async def has(self, digest: str, size: int) -> bool:
        store = await self._os()
        try:
            info = await store.get_info(digest)
        except nats.js.errors.ObjectNotFoundError:
            return False
        return not info.deleted and info.size == size

    async def missing(self, files: Mapping[str, ev.SceneFile]) -> dict[str, ev.SceneFile]:
        """The files (one per digest) that the store lacks."""
        unique = {f.sha256: f for f in files.values()}
        present = await asyncio.gather(*(self.has(d, f.size) for d, f in unique.items()))
        return {d: f for (d, f), ok in zip(unique.items(), present) if not ok}

    async def upload(self, local: Mapping[str, Path], files: Mapping[str, ev.SceneFile], *,
                     on_progress: Callable[[int, int], None] | None = None) -> UploadReport:
        """Put every file the store lacks, streamed from disk. `on_progress(done, total)` in bytes."""
        lacking = await self.missing(files)
        by_digest = {f.sha256: local[path] for path, f in files.items()}
        total = sum(f.size for f in lacking.values())
        done = 0
        store = await self._os()
        for digest, f in lacking.items():
            with open(by_digest[digest], "rb") as fh:
                try:
                    await store.put(digest, fh)
                except (nats.errors.Error, nats.js.errors.Error) as e:
                    path = next(p for p, x in files.items() if x.sha256 == digest)
                    raise SceneFileError(f"cannot store scene file {path!r} ({f.size} bytes) in the scene-file store "
                                         f"{self.bucket!r}: {type(e).__name__}{f': {e}' if str(e) else ''}") from None
            done += f.size
            if on_progress is not None:
                on_progress(done, total)
        unique = len({f.sha256 for f in files.values()})
        return UploadReport(uploaded_files=len(lacking), uploaded_bytes=total, present_files=unique - len(lacking))

    async def fetch(self, digest: str, dest: Path) -> None:
        """Write the object `digest` to `dest`; raise SceneFileError if it is missing or its bytes do
        not hash to its name."""
        store = await self._os()
        try:
            with open(dest, "wb") as fh:
                await store.get(digest, writeinto=fh)
        except (nats.js.errors.ObjectNotFoundError, nats.js.errors.ObjectDeletedError):
            raise SceneFileError(f"not in the scene-file store (bucket {self.bucket})") from None
        except nats.js.errors.DigestMismatchError:
            raise SceneFileError("its stored chunks do not match the store's own checksum") from None
        got = sha256_file(dest)
        if got != digest:
            raise SceneFileError(f"the stored bytes hash to {got[:12]}…, not to their name")

    async def list(self) -> dict[str, int]:
        """Every stored digest and its size."""
        store = await self._os()
        try:
            infos = await store.list(ignore_deletes=True)
        except nats.js.errors.NotFoundError:
            return {}
        return {i.name: i.size for i in infos if not i.deleted}

    async def delete(self, digest: str) -> None:
        store = await self._os()
        try:
            await store.delete(digest)
        except (nats.js.errors.ObjectNotFoundError, nats.js.errors.ObjectDeletedError, nats.js.errors.NotFoundError):
            pass
