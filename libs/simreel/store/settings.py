"""Build the configured store from environment variables (how compose and k8s configure services).

Every error names the variable to fix, because a service that dies at start with
"endpoint is empty" in a pod log is a long hunt; "SIMREEL_S3_ENDPOINT is not set" is not.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from simreel import envvars
from simreel.store.base import ArtifactStore, StoreConfigError
from simreel.store.local import LocalStore

__all__ = ["store_from_env", "key_prefix_from_env", "DEFAULT_KEY_PREFIX", "DEFAULT_STORE_DIR"]

DEFAULT_KEY_PREFIX = "simreel"
DEFAULT_STORE_DIR = "./simreel-out"
DEFAULT_BUCKET = "simreel"


def _get(environ: Mapping[str, str], name: str) -> str | None:
    return envvars.text(environ, name)


def _required(environ: Mapping[str, str], name: str, why: str) -> str:
    value = _get(environ, name)
    if value is None:
        raise StoreConfigError(f"{name} is not set (required {why})")
    return value


def _bool(environ: Mapping[str, str], name: str) -> bool | None:
    return envvars.boolean(environ, name, StoreConfigError)


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    return envvars.integer(environ, name, default, StoreConfigError)


def key_prefix_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """SIMREEL_KEY_PREFIX (default `simreel`): the first segment of every artifact key."""
    return _get(environ, "SIMREEL_KEY_PREFIX") or DEFAULT_KEY_PREFIX


def store_kind(environ: Mapping[str, str] = os.environ) -> str:
    """SIMREEL_STORE, or `s3` when it is unset but SIMREEL_S3_ENDPOINT is set: an endpoint given
    without a store must not send artifacts silently to a local directory."""
    kind = _get(environ, "SIMREEL_STORE")
    if kind is None:
        return "s3" if _get(environ, "SIMREEL_S3_ENDPOINT") else "local"
    return kind.lower()


def store_from_env(environ: Mapping[str, str] = os.environ) -> ArtifactStore:
    """SIMREEL_STORE=local (default) or s3 (also inferred from SIMREEL_S3_ENDPOINT); see
    docs/deploy.md for every variable."""
    kind = store_kind(environ)
    public = _get(environ, "SIMREEL_PUBLIC_BASE_URL")
    if kind == "local":
        root = Path(_get(environ, "SIMREEL_STORE_DIR") or DEFAULT_STORE_DIR)
        return LocalStore(root, base_url=public)
    if kind == "s3":
        # Imported here: minio and urllib3 are ~0.2 s of start-up and memory a local store never uses.
        from simreel.store.s3 import MAX_PRESIGN_SECONDS, S3Store, parse_endpoint

        why = ("when SIMREEL_STORE=s3" if _get(environ, "SIMREEL_STORE")
               else "because SIMREEL_S3_ENDPOINT is set, which selects the S3 store; set SIMREEL_STORE=local "
                    "to store locally")
        endpoint = _required(environ, "SIMREEL_S3_ENDPOINT", why)
        access_key = _required(environ, "SIMREEL_S3_ACCESS_KEY", why)
        secret_key = _required(environ, "SIMREEL_S3_SECRET_KEY", why)
        try:
            host, secure = parse_endpoint(endpoint, _bool(environ, "SIMREEL_S3_SECURE"))
        except StoreConfigError as exc:
            raise StoreConfigError(f"SIMREEL_S3_ENDPOINT / SIMREEL_S3_SECURE: {exc}") from None
        presign = _int(environ, "SIMREEL_S3_PRESIGN_SECONDS", MAX_PRESIGN_SECONDS)
        if presign < 1:
            raise StoreConfigError(f"SIMREEL_S3_PRESIGN_SECONDS must be >= 1, got {presign}")
        return S3Store(
            host,
            access_key,
            secret_key,
            _get(environ, "SIMREEL_S3_BUCKET") or DEFAULT_BUCKET,
            secure=secure,
            region=_get(environ, "SIMREEL_S3_REGION"),
            public_base_url=public,
            presign_seconds=presign,
        )
    raise StoreConfigError(f"SIMREEL_STORE={kind!r} is not a store; use 'local' or 's3'")
