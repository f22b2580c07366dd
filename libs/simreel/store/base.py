"""The storage contract shared by the uploader (put), retention (delete) and readers (url).

Keys are built here, in one place, so that a run id or session name coming from a request can never
escape its prefix: on a filesystem `..` or `/` would be path traversal, on S3 it would be a key that
retention does not know about.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgspec

from simreel.contract.digest import file_digest  # noqa: F401 - re-exported for the stores

__all__ = [
    "ArtifactStore",
    "Stored",
    "StoreError",
    "StoreConfigError",
    "StoreRejectedError",
    "SourceNotFoundError",
    "make_key",
    "sanitize_part",
    "check_key",
    "file_digest",
]

# S3 keys allow almost anything, filesystems and URLs do not: the intersection is what we keep.
_ALLOWED = re.compile(r"[^A-Za-z0-9._-]")
# 255 bytes is the usual filename limit; a longer part would fail later with an obscure OS error.
_MAX_PART = 255


class StoreError(Exception):
    """An artifact could not be stored, verified or deleted (after retries, where they apply)."""


class StoreConfigError(StoreError, ValueError):
    """The store settings are missing or invalid; the message names the variable to fix."""


class StoreRejectedError(StoreError):
    """The store refused the request and will refuse it again (access denied, an invalid bucket
    name, ...): retrying it is pointless, the settings or permissions must change."""


class SourceNotFoundError(StoreError, FileNotFoundError):
    """The file to store is gone (e.g. a redelivered message whose staged file was removed).

    Also a FileNotFoundError, so callers can tell "nothing to upload" from a failed upload with
    either `except FileNotFoundError` or `except StoreError`.
    """


class Stored(msgspec.Struct, frozen=True):
    """What the uploader puts on ArtifactStored: enough to fetch and verify the artifact later."""

    key: str
    url: str
    bytes: int
    sha256: str
    content_type: str
    bucket: str = ""  # "" for LocalStore
    path: str | None = None  # local file path (LocalStore only)
    expires_at: float | None = None  # unix time a presigned URL stops working; None = no expiry


@runtime_checkable
class ArtifactStore(Protocol):
    """Where finished artifacts live. Every method is safe to repeat (redelivered messages)."""

    async def put(
        self, key: str, path: Path, *, content_type: str, metadata: dict[str, str]
    ) -> Stored:
        """Store the file at `path` under `key` (overwriting), return where it is and its digest."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove `key`; True if it existed. A missing key is not an error (retention replays)."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def read(self, key: str, max_bytes: int) -> bytes:
        """The whole object (FileNotFoundError if missing, StoreError if larger than `max_bytes`)."""
        ...

    async def stat(self, key: str, *, content_type: str = "") -> Stored | None:
        """What is stored under `key` now (size, sha256, URL), or None. A redelivered message whose
        staged file is gone announces the object from this, not from a guess."""
        ...

    def url(self, key: str) -> str:
        """A URL a reader can fetch `key` from (no network call)."""
        ...

    async def close(self) -> None: ...


def sanitize_part(part: object) -> str:
    """One key segment, safe as a filename and an S3/URL path segment.

    Characters outside `[A-Za-z0-9._-]` become `_` (so `/`, `\\`, spaces, control characters and
    non-ASCII can never split or escape a key); empty becomes `_`. `.` and `..` are refused rather
    than rewritten, because silently mapping them would let two different inputs share a key.
    """
    text = _ALLOWED.sub("_", str(part))
    if not text:
        text = "_"
    if text in (".", ".."):
        raise ValueError(f"key part {part!r} is not allowed (it would be a relative path)")
    if len(text) > _MAX_PART:
        raise ValueError(f"key part is {len(text)} characters long; at most {_MAX_PART} allowed")
    return text


def make_key(
    prefix: str, session: str, run_id: str, episode: int | None, name: str
) -> str:
    """`{prefix}/{session}/{run_id}/{episode:04d|all}/{name}`, every part sanitized.

    The layout groups a session's artifacts under one prefix, which is what retention and S3
    lifecycle rules work on.
    """
    if episode is None:
        ep = "all"
    elif isinstance(episode, bool) or not isinstance(episode, int):
        raise ValueError(f"episode must be an int or None, not {episode!r}")
    elif episode < 0:
        raise ValueError(f"episode must be >= 0, not {episode}")
    else:
        ep = f"{episode:04d}"
    return "/".join(sanitize_part(p) for p in (prefix, session, run_id, ep, name))


def check_key(key: str) -> str:
    """Refuse keys that make_key could not have produced, before they reach a path or a URL.

    Stores accept keys from events; validating here means a malformed or hostile key fails with a
    clear ValueError instead of writing outside the store root.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("key must be a non-empty string")
    parts = key.split("/")
    for part in parts:
        if not part:
            raise ValueError(f"key {key!r} has an empty segment (leading, trailing or double '/')")
        if part in (".", ".."):
            raise ValueError(f"key {key!r} contains a relative segment {part!r}")
        if _ALLOWED.search(part):
            raise ValueError(
                f"key {key!r} has characters outside [A-Za-z0-9._-/]; build keys with make_key()"
            )
        if len(part) > _MAX_PART:
            raise ValueError(f"key {key!r} has a segment longer than {_MAX_PART} characters")
    return key
