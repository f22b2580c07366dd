"""Where artifacts end up: the ArtifactStore protocol, LocalStore (default) and S3Store.

`store_from_env()` picks one from SIMREEL_* variables; services depend on the protocol only.
"""
from simreel.store.base import (
    ArtifactStore,
    SourceNotFoundError,
    Stored,
    StoreConfigError,
    StoreError,
    check_key,
    make_key,
    sanitize_part,
)
from simreel.store.local import LocalStore
from simreel.store.s3 import S3Store
from simreel.store.settings import key_prefix_from_env, store_from_env

__all__ = [
    "ArtifactStore",
    "LocalStore",
    "S3Store",
    "SourceNotFoundError",
    "Stored",
    "StoreConfigError",
    "StoreError",
    "check_key",
    "key_prefix_from_env",
    "make_key",
    "sanitize_part",
    "store_from_env",
]
