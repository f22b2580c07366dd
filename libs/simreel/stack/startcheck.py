"""Settings that can never work, found before any work starts.

A bucket name S3 refuses, credentials it rejects, a NATS URL with a typo, a TLS file that is not
there, a store directory nobody may write: each used to show only after a run had simulated and
encoded, as an upload retried for half a minute or a connection retried for minutes. `simreel run`,
`up` and `serve` (and every service process) run these checks first and stop with one sentence that
names the setting. Each check is cheap: parsing, a file open, one HEAD request to S3.
"""
from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from simreel.runtime import config
from simreel.runtime.config import NatsSettings, Settings
from simreel.store.base import StoreConfigError, StoreRejectedError
from simreel.store.settings import store_from_env, store_kind

# What each service reads besides NATS.
USES_STORE = {"uploader", "retention"}
USES_STAGING = {"encoder", "uploader"}
_NATS_SCHEMES = {"nats", "tls", "ws", "wss"}


class SettingError(ValueError):
    """A setting that cannot work; the message names it and says why."""


def nats(settings: NatsSettings, *, url_setting: str = "SIMREEL_NATS_URL") -> None:
    """Every server URL parses, and the credentials and TLS files exist and load."""
    for raw in settings.url.split(","):
        url = raw.strip()
        try:
            parts = urlsplit(url if "://" in url else f"nats://{url}")
            port = parts.port
        except ValueError as e:
            raise SettingError(f"{url_setting}: {url!r} is not a NATS URL ({e})") from None
        if parts.scheme not in _NATS_SCHEMES or not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise SettingError(f"{url_setting}: {url!r} is not a NATS URL (nats://host:port, or tls://, ws://, wss://)")
        if port == 0:
            raise SettingError(f"{url_setting}: {url!r} has port 0")
    for value, name in ((settings.creds, "SIMREEL_NATS_CREDS"), (settings.tls_ca, "SIMREEL_NATS_TLS_CA"),
                        (settings.tls_cert, "SIMREEL_NATS_TLS_CERT"), (settings.tls_key, "SIMREEL_NATS_TLS_KEY")):
        if value:
            readable_file(value, name)
    if settings.tls_key and not settings.tls_cert:
        raise SettingError("SIMREEL_NATS_TLS_KEY is set without SIMREEL_NATS_TLS_CERT")
    if settings.tls_ca:
        try:
            ssl.create_default_context(cafile=settings.tls_ca)
        except (ssl.SSLError, ValueError) as e:
            raise SettingError(f"SIMREEL_NATS_TLS_CA={settings.tls_ca}: not a CA certificate file ({e})") from None
    if settings.tls_cert:
        try:
            ssl.create_default_context().load_cert_chain(settings.tls_cert, settings.tls_key)
        except (ssl.SSLError, ValueError) as e:
            raise SettingError(f"SIMREEL_NATS_TLS_CERT / SIMREEL_NATS_TLS_KEY: the certificate and key do not "
                               f"load ({e})") from None


def readable_file(path: str, name: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise SettingError(f"{name}={path}: no such file")
    try:
        with open(p, "rb"):
            pass
    except OSError as e:
        raise SettingError(f"{name}={path}: cannot be read ({e.strerror})") from None


def writable_dir(path: str | Path, name: str) -> None:
    """The directory exists or can be made, and a file can be written in it."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".simreel-write-check-"):
            pass
    except OSError as e:
        raise SettingError(f"{name}={path}: cannot write there ({e.strerror or e})") from None


async def store(env: Mapping[str, str] = os.environ, *, dir_setting: str = "SIMREEL_STORE_DIR") -> None:
    """The artifact store: a writable directory, or an S3 bucket name that is valid, at an endpoint
    that answers and takes the credentials (one HEAD request; a silent endpoint is waited for up to
    SIMREEL_S3_CONNECT_TIMEOUT_S, default 30 s, with a progress line per retry)."""
    try:
        s3_deadline_s = config.s3_connect_timeout_s(env, SettingError)
        st = store_from_env(env)
    except StoreConfigError as e:
        raise SettingError(str(e)) from None
    try:
        if store_kind(env) == "local":
            writable_dir(st.root, dir_setting)
        else:
            await st.check(deadline_s=s3_deadline_s)
    except StoreRejectedError as e:
        raise SettingError(str(e)) from None
    finally:
        await st.close()


async def services(names: Iterable[str], settings: Settings, env: Mapping[str, str] = os.environ) -> None:
    """What the named services will use: NATS always, the store and the staging directory for those
    that read them."""
    names = set(names)
    nats(settings.nats)
    if names & USES_STAGING and settings.staging == "dir":
        writable_dir(settings.staging_dir, "SIMREEL_STAGING_DIR")
    if names & USES_STORE:
        await store(env)
