"""The simulator's local copies of scene files, by digest, bounded in bytes.

A robot's meshes are fetched from the scene-file store once per simulator host and reused by every
later run of that robot. Each copy is hashed again when a run reads it (a disk can rot, a hand can
edit), and the least recently used copies (by access time) go first when the cache is over its size. Files of runs
being prepared are pinned: they are never evicted under a run that is about to link them.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from simreel.contract import events as ev
from simreel.runtime import log as logs
from simreel.transport.scenefiles import SceneFileError, SceneFileStore
from simreel.sim.errors import SceneError
from simreel.sim.package import sha256_file

_log = logs.get("simulator.scene_cache")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    fetched_bytes: int = 0
    evicted: int = 0


def _touch(path: Path) -> None:
    """Mark a copy as just used (its access time orders evictions); its modification time stays, so
    MuJoCo's own cache, keyed by path and modification time, keeps hitting."""
    st = path.stat()
    os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))


@dataclass
class SceneCache:
    store: SceneFileStore
    root: Path
    max_bytes: int
    stats: CacheStats = field(default_factory=CacheStats)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _pins: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    @contextlib.asynccontextmanager
    async def files(self, manifest: Mapping[str, ev.SceneFile]) -> AsyncIterator[dict[str, Path]]:
        """Local, verified copies of a request's files (path in the tree -> cached file), pinned
        while the context is open. Raises SceneError naming the first file that cannot be had."""
        digests = {f.sha256 for f in manifest.values()}
        for d in digests:
            self._pins[d] = self._pins.get(d, 0) + 1
        try:
            unique = {f.sha256: f for f in manifest.values()}
            by_digest = await asyncio.to_thread(self._verified_copies, unique)  # one thread hop for all
            for path, f in sorted(manifest.items()):
                if f.sha256 not in by_digest:
                    try:
                        by_digest[f.sha256] = await self._ensure(f)
                    except SceneFileError as e:
                        raise SceneError(f"scene file {path!r} (sha256 {f.sha256[:12]}…): {e}") from None
            yield {path: by_digest[f.sha256] for path, f in manifest.items()}
        finally:
            for d in digests:
                self._pins[d] -= 1
                if not self._pins[d]:
                    del self._pins[d]
            await asyncio.to_thread(self._evict)

    def _verified_copies(self, files: Mapping[str, ev.SceneFile]) -> dict[str, Path]:
        """The cached copies whose bytes still hash to their digest (hits); the rest are fetched."""
        out = {}
        for digest, f in files.items():
            path = self._path(digest)
            if path.is_file() and path.stat().st_size == f.size:
                if sha256_file(path) == digest:
                    self.stats.hits += 1
                    _touch(path)
                    out[digest] = path
                    continue
                _log.warning("scene_cache_corrupt_copy_dropped", digest=digest)
                path.unlink(missing_ok=True)
        return out

    async def _ensure(self, f: ev.SceneFile) -> Path:
        lock = self._locks.setdefault(f.sha256, asyncio.Lock())
        async with lock:
            path = self._path(f.sha256)
            if path.is_file() and path.stat().st_size == f.size:  # fetched meanwhile by another run
                return path
            self.stats.misses += 1
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{f.sha256}.{uuid.uuid4().hex}")
            try:
                await self.store.fetch(f.sha256, tmp)
                if tmp.stat().st_size != f.size:
                    raise SceneFileError(f"the store holds {tmp.stat().st_size} bytes, the request says {f.size}")
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            self.stats.fetched_bytes += f.size
            return path

    def _evict(self) -> None:
        entries = []
        for p in self.root.glob("??/*"):
            if p.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):
                st = p.stat()
                entries.append((st.st_atime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            if p.name in self._pins:
                continue
            p.unlink(missing_ok=True)
            total -= size
            self.stats.evicted += 1
