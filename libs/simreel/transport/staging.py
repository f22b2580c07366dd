"""Hand-off of encoded files from the process that made them to the uploader.

Two kinds, one interface: a shared directory (embedded mode: one machine, zero copies) and a
JetStream object store bucket (services on different hosts; files streamed in chunks, never held
whole in memory). A staged ref names its kind, so an uploader can read refs of either.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import AsyncIterator, Protocol

import nats.js.errors
from nats.js import api

from simreel.contract import subjects
from simreel.transport.bus import Bus
from simreel.runtime.config import Settings

DIR_PREFIX = "dir:"
OBJ_PREFIX = "obj:"


class Staging(Protocol):
    """What producers (encoder, simulator) and the uploader use of a staging area."""

    def tempdir(self) -> Path:
        """A fresh directory to write work files in, so `put` can be a rename."""
        ...

    async def put(self, name: str, path: Path) -> str: ...

    def local(self, ref: str) -> contextlib.AbstractAsyncContextManager[Path]: ...

    async def delete(self, ref: str) -> None: ...


def _check_name(name: str) -> str:
    if not name or name.startswith("/") or ".." in name.split("/") or "\\" in name:
        raise ValueError(f"bad staging name {name!r}")
    return name


class DirStaging:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, ref: str) -> Path:
        if not ref.startswith(DIR_PREFIX):
            raise ValueError(f"not a directory-staged ref: {ref!r}")
        p = (self.root / _check_name(ref[len(DIR_PREFIX):])).resolve()
        if self.root not in p.parents:
            raise ValueError(f"staged ref escapes the staging dir: {ref!r}")
        return p

    def tempdir(self) -> Path:
        """Work files are written here so `put` is an atomic rename on the same filesystem."""
        d = self.root / ".work"
        d.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=d))

    async def put(self, name: str, path: Path) -> str:
        ref = DIR_PREFIX + _check_name(name)
        dest = self._path(ref)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, dest)
        except OSError:  # another filesystem
            await asyncio.to_thread(shutil.copyfile, path, dest)
        return ref

    @contextlib.asynccontextmanager
    async def local(self, ref: str) -> AsyncIterator[Path]:
        p = self._path(ref)
        if not p.exists():
            raise FileNotFoundError(f"staged file is gone: {ref}")
        yield p

    async def delete(self, ref: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(ref).unlink()


class ObjectStaging:
    def __init__(self, bus: Bus, bucket: str = subjects.STAGING_BUCKET, ttl_s: float = 24 * 3600) -> None:
        self.bus = bus
        self.bucket = bucket
        self.ttl_s = ttl_s
        self._store = None
        self._work = Path(tempfile.mkdtemp(prefix="simreel-stage-"))

    def tempdir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self._work))

    async def _os(self):
        if self._store is None:
            try:
                self._store = await self.bus.js.object_store(self.bucket)
            except nats.js.errors.NotFoundError:
                try:
                    self._store = await self.bus.js.create_object_store(
                        self.bucket,
                        config=api.ObjectStoreConfig(ttl=self.ttl_s, storage=api.StorageType.FILE,
                                                     replicas=self.bus.replicas),
                    )
                except nats.js.errors.BadRequestError:
                    self._store = await self.bus.js.object_store(self.bucket)
        return self._store

    async def put(self, name: str, path: Path) -> str:
        store = await self._os()
        name = _check_name(name)
        with open(path, "rb") as f:
            await store.put(name, f)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return f"{OBJ_PREFIX}{self.bucket}/{name}"

    def _name(self, ref: str) -> str:
        if not ref.startswith(OBJ_PREFIX):
            raise ValueError(f"not an object-staged ref: {ref!r}")
        bucket, _, name = ref[len(OBJ_PREFIX):].partition("/")
        if bucket != self.bucket:
            raise ValueError(f"staged ref {ref!r} is in bucket {bucket!r}, this staging uses {self.bucket!r}")
        return _check_name(name)

    @contextlib.asynccontextmanager
    async def local(self, ref: str) -> AsyncIterator[Path]:
        store = await self._os()
        d = self.tempdir()
        p = d / Path(self._name(ref)).name
        try:
            with open(p, "wb") as f:
                try:
                    await store.get(self._name(ref), writeinto=f)
                except nats.js.errors.ObjectNotFoundError:
                    raise FileNotFoundError(f"staged object is gone: {ref}") from None
            yield p
        finally:
            shutil.rmtree(d, ignore_errors=True)

    async def delete(self, ref: str) -> None:
        store = await self._os()
        with contextlib.suppress(nats.js.errors.NotFoundError, nats.js.errors.ObjectNotFoundError,
                                 nats.js.errors.ObjectDeletedError):
            await store.delete(self._name(ref))


def staging_for(settings: Settings, bus: Bus) -> DirStaging | ObjectStaging:
    if settings.staging == "dir":
        return DirStaging(settings.staging_dir)
    return ObjectStaging(bus)


class AnyStaging:
    """Reads refs of either kind (a mixed deployment during migration), writes with the configured one."""

    def __init__(self, settings: Settings, bus: Bus) -> None:
        self.primary = staging_for(settings, bus)
        self._dir = self.primary if isinstance(self.primary, DirStaging) else (
            DirStaging(settings.staging_dir) if settings.staging_dir.exists() else None)
        self._obj = self.primary if isinstance(self.primary, ObjectStaging) else ObjectStaging(bus)

    def tempdir(self) -> Path:
        return self.primary.tempdir()

    async def put(self, name: str, path: Path) -> str:
        return await self.primary.put(name, path)

    def _for(self, ref: str):
        if ref.startswith(DIR_PREFIX):
            if self._dir is None:
                raise FileNotFoundError(f"{ref} is directory-staged but no SIMREEL_STAGING_DIR is shared here")
            return self._dir
        if ref.startswith(OBJ_PREFIX):
            return self._obj
        raise ValueError(f"unknown staged ref {ref!r}")

    def local(self, ref: str):
        return self._for(ref).local(ref)

    async def delete(self, ref: str) -> None:
        await self._for(ref).delete(ref)
