"""LocalStore: the default store of the embedded mode, a directory tree with file:// URLs.

All file IO runs in a worker thread (asyncio.to_thread): the uploader shares its event loop with
NATS heartbeats and acks, and a multi-gigabyte copy must not stall them.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from simreel.runtime import log
from simreel.store.base import SourceNotFoundError, Stored, StoreError, check_key, file_digest

__all__ = ["LocalStore"]

_CHUNK = 1024 * 1024
_log = log.get(__name__)


class LocalStore:
    """Artifacts under `root/key`; URLs are `file://` (or `base_url + key` when a web server
    serves `root`)."""

    def __init__(self, root: Path | str, base_url: str | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self.base_url = base_url.rstrip("/") + "/" if base_url else None

    def __repr__(self) -> str:
        return f"LocalStore(root={str(self.root)!r}, base_url={self.base_url!r})"

    def _path(self, key: str) -> Path:
        check_key(key)
        path = self.root.joinpath(*key.split("/"))
        # check_key already refuses `..`; this guards against a symlinked root subtree too.
        if not path.resolve().is_relative_to(self.root):
            raise ValueError(f"key {key!r} resolves outside the store root")
        return path

    def path(self, key: str) -> Path:
        """Where `key` lives on disk (refusing any key that would leave the root)."""
        return self._path(key)

    async def read(self, key: str, max_bytes: int) -> bytes:
        """The file's bytes, for small artifacts a reader shows (telemetry, report, scene.xml)."""
        path = self._path(key)

        def _read() -> bytes:
            size = path.stat().st_size
            if size > max_bytes:
                raise StoreError(f"{key!r} is {size} bytes; at most {max_bytes} are read")
            return path.read_bytes()

        return await asyncio.to_thread(_read)

    def url(self, key: str) -> str:
        path = self._path(key)
        if self.base_url:
            return self.base_url + quote(key)
        return path.as_uri()

    async def put(
        self, key: str, path: Path, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> Stored:
        dest = self._path(key)
        src = Path(path)
        t0 = time.monotonic()
        expected = (metadata or {}).get("sha256") or None
        try:
            size, digest = await asyncio.to_thread(_copy_atomic, src, dest, expected)
        except StoreError:
            raise
        except OSError as exc:
            raise StoreError(f"cannot store {key!r} under {self.root}: {exc}") from exc
        _log.info(
            "artifact stored",
            store="local",
            key=key,
            bytes=size,
            ms=round((time.monotonic() - t0) * 1000, 1),
        )
        return Stored(
            key=key,
            url=self.url(key),
            bytes=size,
            sha256=digest,
            content_type=content_type,
            bucket="",
            path=str(dest),
            expires_at=None,
        )

    async def delete(self, key: str) -> bool:
        dest = self._path(key)
        existed = await asyncio.to_thread(_unlink_and_prune, dest, self.root)
        _log.info("artifact deleted", store="local", key=key, existed=existed)
        return existed

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def stat(self, key: str, *, content_type: str = "") -> Stored | None:
        dest = self._path(key)
        try:
            size, digest = await asyncio.to_thread(file_digest, dest)
        except FileNotFoundError:
            return None
        return Stored(key=key, url=self.url(key), bytes=size, sha256=digest,
                      content_type=content_type or "application/octet-stream", bucket="", path=str(dest),
                      expires_at=None)

    async def close(self) -> None:
        return None


def _copy_atomic(src: Path, dest: Path, expected_sha256: str | None) -> tuple[int, str]:
    """Stream src into dest through a temp file + os.replace, hashing on the way.

    A reader (or a crash) sees either the old file or the complete new one, never a partial copy.
    The copy is fsynced before the rename so a power loss cannot leave a renamed-but-empty file.
    When the caller knows the digest (VideoAvailable carries it), a mismatch means the staged
    file is not what the encoder produced: it is refused before it replaces anything.
    """
    sha = hashlib.sha256()
    size = 0
    try:
        fin = open(src, "rb")
    except FileNotFoundError as exc:
        raise SourceNotFoundError(f"cannot store {dest.name}: source file {src} does not exist") from exc
    with fin:
        fd, tmp = _mkstemp_beside(dest)
        try:
            with os.fdopen(fd, "wb") as fout:
                while chunk := fin.read(_CHUNK):
                    sha.update(chunk)
                    fout.write(chunk)
                    size += len(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            if expected_sha256 and expected_sha256 != sha.hexdigest():
                raise StoreError(
                    f"sha256 of {src} is {sha.hexdigest()}, but the caller said "
                    f"{expected_sha256}: refusing to store"
                )
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are meant to be read
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return size, sha.hexdigest()


def _mkstemp_beside(dest: Path) -> tuple[int, str]:
    # A concurrent delete may prune the (empty) parent between mkdir and mkstemp: retry a little.
    for _ in range(5):
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            return tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        except FileNotFoundError:
            continue
    raise StoreError(f"cannot create a temp file in {dest.parent}")


def _unlink_and_prune(dest: Path, root: Path) -> bool:
    """Remove the file and the directories it leaves empty, up to (not including) root,
    so retention does not leave thousands of empty run folders behind."""
    try:
        dest.unlink()
    except FileNotFoundError:
        return False
    parent = dest.parent
    while parent != root and parent.is_relative_to(root):
        try:
            parent.rmdir()
        except OSError:  # not empty (or already gone / raced): stop pruning
            break
        parent = parent.parent
    return True
