"""Build the configured store from its settings (simreel.runtime.config.StoreSettings: how compose and k8s
configure services).

Every error names the variable to fix, because a service that dies at start with
"endpoint is empty" in a pod log is a long hunt; "SIMREEL_S3_ENDPOINT is not set" is not.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from simreel.runtime.config import StoreSettings
from simreel.store.base import ArtifactStore, StoreConfigError
from simreel.store.local import LocalStore

__all__ = ["store_from_env", "key_prefix_from_env", "DEFAULT_KEY_PREFIX", "DEFAULT_STORE_DIR"]

DEFAULT_KEY_PREFIX = "simreel"
DEFAULT_STORE_DIR = "./simreel-out"
DEFAULT_BUCKET = "simreel"


def _required(value: str | None, name: str, why: str) -> str:
    if value is None:
        raise StoreConfigError(f"{name} is not set (required {why})")
    return value


def _settings(environ: Mapping[str, str]) -> StoreSettings:
    return StoreSettings.from_env(environ, StoreConfigError)


def key_prefix_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """SIMREEL_KEY_PREFIX (default `simreel`): the first segment of every artifact key."""
    return _settings(environ).key_prefix


def store_kind(environ: Mapping[str, str] = os.environ) -> str:
    """SIMREEL_STORE, or `s3` when it is unset but SIMREEL_S3_ENDPOINT is set: an endpoint given
    without a store must not send artifacts silently to a local directory."""
    return _settings(environ).kind


def store_from_env(environ: Mapping[str, str] = os.environ) -> ArtifactStore:
    """SIMREEL_STORE=local (default) or s3 (also inferred from SIMREEL_S3_ENDPOINT); see
    docs/deploy.md for every variable."""
    st = _settings(environ)
    if st.kind == "local":
        return LocalStore(Path(st.store_dir or DEFAULT_STORE_DIR), base_url=st.public_base_url)
    if st.kind == "s3":
        # Imported here: minio and urllib3 are ~0.2 s of start-up and memory a local store never uses.
        from simreel.store.s3 import MAX_PRESIGN_SECONDS, S3Store, parse_endpoint

        why = ("when SIMREEL_STORE=s3" if st.kind_given
               else "because SIMREEL_S3_ENDPOINT is set, which selects the S3 store; set SIMREEL_STORE=local "
                    "to store locally")
        endpoint = _required(st.s3_endpoint, "SIMREEL_S3_ENDPOINT", why)
        access_key = _required(st.s3_access_key, "SIMREEL_S3_ACCESS_KEY", why)
        secret_key = _required(st.s3_secret_key, "SIMREEL_S3_SECRET_KEY", why)
        try:
            host, secure = parse_endpoint(endpoint, st.s3_secure)
        except StoreConfigError as exc:
            raise StoreConfigError(f"SIMREEL_S3_ENDPOINT / SIMREEL_S3_SECURE: {exc}") from None
        presign = MAX_PRESIGN_SECONDS if st.s3_presign_seconds is None else st.s3_presign_seconds
        if presign < 1:
            raise StoreConfigError(f"SIMREEL_S3_PRESIGN_SECONDS must be >= 1, got {presign}")
        return S3Store(
            host,
            access_key,
            secret_key,
            st.s3_bucket or DEFAULT_BUCKET,
            secure=secure,
            region=st.s3_region,
            public_base_url=st.public_base_url,
            presign_seconds=presign,
        )
    raise StoreConfigError(f"SIMREEL_STORE={st.kind!r} is not a store; use 'local' or 's3'")
