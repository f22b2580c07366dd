"""Where artifacts end up: the ArtifactStore protocol, LocalStore (default) and S3Store.

`store_from_env()` picks one from SIMREEL_* variables; services depend on the protocol only.
"""
from simreel.store.base import (
    ArtifactStore,
    SourceNotFoundError,
    Stored,
    StoreConfigError,
    StoreError,
    StoreRejectedError,
    check_key,
    make_key,
    sanitize_part,
)
from simreel.store.local import LocalStore
from simreel.store.settings import key_prefix_from_env, store_from_env



def __getattr__(name: str):
    """S3Store on first use: minio and urllib3 are ~0.2 s of start-up a local store never needs."""
    if name == "S3Store":
        from simreel.store.s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ArtifactStore",
    "LocalStore",
    "S3Store",
    "SourceNotFoundError",
    "Stored",
    "StoreConfigError",
    "StoreError",
    "StoreRejectedError",
    "check_key",
    "key_prefix_from_env",
    "make_key",
    "sanitize_part",
    "store_from_env",
]
