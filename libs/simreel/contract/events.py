"""Every simreel event, as msgspec Structs: the wire contract between services and other systems.

Events are facts in the past tense and carry no behaviour. They are JSON on the wire (a tagged union:
the `type` field names the event), except FrameBatch, which is msgpack because it carries raw pixels.
Limits live in the types, so a bad request fails in the decoder with a precise path
(`Expected int <= 4096 - at $.render.width`) instead of deep inside a service.
"""
from __future__ import annotations

import re
import time
import uuid
from typing import Annotated, Any, Literal, Union

import msgspec

from simreel.contract.keep import Rule as KeepRule

SCHEMA_VERSION = 1

# Identifiers end up in NATS subjects and object keys: no dots, spaces, slashes or wildcards.
RUN_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
RunId = Annotated[str, msgspec.Meta(pattern=RUN_ID_PATTERN, description="run id: [A-Za-z0-9_-], 1-64 chars")]


def is_run_id(text: object) -> bool:
    """Whether `text` is a valid run id (the RunId type's own rule), e.g. for a subject token."""
    return isinstance(text, str) and re.fullmatch(RUN_ID_PATTERN, text) is not None
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
# Frame sides any producer may send and any encoder accepts: the one home of this limit.
FRAME_SIDE = (16, 4096)
Width = Annotated[int, msgspec.Meta(ge=FRAME_SIDE[0], le=FRAME_SIDE[1])]
Height = Annotated[int, msgspec.Meta(ge=FRAME_SIDE[0], le=FRAME_SIDE[1])]


def check_frame_size(width: int, height: int) -> None:
    """Raise a clear ValueError for a frame size no encoder accepts (before any frame is sent)."""
    lo, hi = FRAME_SIDE
    if not (lo <= width <= hi and lo <= height <= hi):
        raise ValueError(f"frames of {width}x{height} cannot be recorded: width and height must be {lo}..{hi}")
Fps = Annotated[int, msgspec.Meta(ge=1, le=240)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Episode = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
Attempt = Annotated[int, msgspec.Meta(ge=1, le=100)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
VideoFormat = Literal["mp4", "gif", "png"]
# What a camera records: colour, depth (metres), segmentation (object id and type per pixel).
StreamName = Literal["rgb", "depth", "segmentation"]
# Files of a stream: the request's formats for rgb; "mkv" (FFV1, lossless) and an "mp4" preview for
# depth and segmentation.
FileFormat = Literal["mp4", "gif", "png", "mkv"]
# Pixel format of each stream on the wire (simreel.contract.streams): rgb24; depth as uint16 little-endian in
# units of SimStarted.perception.depth_scale_m; segmentation as bgra bytes = object id + 1 (16 bits
# in B, G), object type + 1 (R), 0 (A); 0 is "no object".
PixFmt = Literal["rgb24", "gray16le", "bgra"]
ArtifactKind = Literal["video", "gif", "frames", "scene", "report", "telemetry",
                       "depth", "depth_preview", "segmentation", "segmentation_preview"]


def new_id() -> str:
    return uuid.uuid4().hex


def now() -> float:
    return time.time()


class Event(msgspec.Struct, tag=True, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """Common envelope. `event_id` is also sent as Nats-Msg-Id, so a republished fact is dropped by
    JetStream's duplicate window: services make it deterministic where an effect must happen once."""

    event_id: str = msgspec.field(default_factory=new_id)
    run_id: RunId
    ts: float = msgspec.field(default_factory=now)
    v: int = SCHEMA_VERSION


# --- request ---------------------------------------------------------------------------------------


class FreeCamera(msgspec.Struct, frozen=True, kw_only=True):
    distance: Annotated[float, msgspec.Meta(gt=0)] = 3.0
    azimuth: float = 90.0
    elevation: float = -20.0
    lookat: tuple[float, float, float] = (0.0, 0.0, 0.5)


class RenderSpec(msgspec.Struct, frozen=True, kw_only=True):
    width: Width = 640
    height: Height = 480
    fps: Fps = 30
    # Named cameras; empty = the scene's first named camera (or the free camera if it has none).
    cameras: list[Name] = []
    free_camera: FreeCamera | None = None
    tile: bool = False
    quality: Literal["full", "fast"] = "full"
    # A render engine by name (simreel.sim.engines): "gl" = mujoco.Renderer, one episode after the
    # other; a batch engine ("mjwarp") runs the episodes as parallel worlds, one seed per world.
    # Names only: a request never names a module to import.
    engine: Name = "gl"
    engine_options: dict[str, str | int | float | bool] = {}
    # Streams recorded for every camera; "rgb" always among them (the simulator refuses the request
    # otherwise, and a stream the engine cannot render, before rendering).
    streams: Annotated[list[StreamName], msgspec.Meta(min_length=1, max_length=3)] = \
        msgspec.field(default_factory=lambda: ["rgb"])


# CRF each MP4 codec accepts: the one home of this rule (the schema's bound is the widest; the
# encoder refuses a value outside its codec's range before reading a frame; Mp4Writer checks it too).
CRF_RANGE: dict[str, tuple[int, int]] = {"libx264": (0, 51), "libsvtav1": (1, 63)}


class OutputSpec(msgspec.Struct, frozen=True, kw_only=True):
    formats: list[VideoFormat] = msgspec.field(default_factory=lambda: ["mp4"])
    layout: Literal["per-episode", "concat", "both"] = "per-episode"
    # libsvtav1 (AV1 in MP4) where the PyAV build has it; the encoder says so clearly where it has not.
    codec: Literal["libx264", "libsvtav1"] = "libx264"
    crf: Annotated[int, msgspec.Meta(ge=min(lo for lo, _ in CRF_RANGE.values()),
                                     le=max(hi for _, hi in CRF_RANGE.values()))] = 23
    preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
    ] = "veryfast"
    gif_fps: Annotated[int, msgspec.Meta(ge=1, le=50)] = 15
    gif_width: Width | None = None
    telemetry: bool = True
    # State recorded per frame besides t/step/reward/action: MuJoCo scenes "qpos", "qvel", "sensordata";
    # Gymnasium scenes "obs". None = every one the scene has (within the size limit); [] = none.
    telemetry_fields: list[Literal["qpos", "qvel", "sensordata", "obs"]] | None = None
    # Which episodes keep their videos, decided from each episode's outcome after it ended
    # (simreel.contract.keep; docs/events.md "Keep rules"). None: every episode. Telemetry and the report are
    # stored for every episode; a discarded episode's videos are deleted and EpisodeDiscarded says why.
    keep: KeepRule | None = None

    def __post_init__(self) -> None:
        if self.keep is not None and self.layout != "per-episode":
            raise ValueError("keep selects per-episode videos: it needs layout \"per-episode\"")


Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$", description="lower-case hex SHA-256")]
# A path inside a request's scene tree: relative, '/'-separated (checked again, with '..', when loaded).
TreePath = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class SceneFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file of a scene, stored by content in the scene-file store (object `sha256` of bucket
    `simreel-scene-files`) and named in a request by its path in the scene's tree."""

    sha256: Sha256
    size: Count


class SimRequested(Event, kw_only=True):
    """Ask for a simulation to be run, rendered, encoded and stored.

    `scene` is a builtin name (`cartpole`), the path of one of `files` (a scene tree shipped by content:
    the MJCF and every file it references, each named by its path and digest), inline MJCF (starts with
    `<`; it sits at the top of the tree, its references in `files` or, for small files, inline in
    `assets`), `file:<path>` under a configured scene root, or `gymnasium:<EnvId>`.
    """

    run_id: RunId = msgspec.field(default_factory=new_id)
    scene: Annotated[str, msgspec.Meta(min_length=1, max_length=4_000_000)]
    assets: dict[str, bytes] = {}
    files: dict[TreePath, SceneFile] = {}
    episodes: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    seed: int = 0
    seeds: list[int] | None = None
    duration_s: Seconds | None = None
    max_steps: Annotated[int, msgspec.Meta(ge=1)] | None = None
    policy: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "zero"
    policy_params: dict[str, Any] = {}
    env_kwargs: dict[str, Any] = {}
    render: RenderSpec = RenderSpec()
    outputs: OutputSpec = OutputSpec()
    session: Name = "default"
    tags: dict[str, str] = {}
    fail_on_blank: bool = False

    def with_request_id(self) -> "SimRequested":
        """This request with the id every submitter gives it, `req-<run_id>`: a resubmission of the same
        run is then dropped by NATS's duplicate window instead of starting the run twice."""
        return msgspec.structs.replace(self, event_id=f"req-{self.run_id}")


# --- simulator -------------------------------------------------------------------------------------


class Perception(msgspec.Struct, frozen=True, kw_only=True):
    """How to read a run's depth and segmentation streams (SimStarted.perception, and the report)."""

    # Stored depth value v means v × depth_scale_m metres; 65535 means that far or farther (background).
    depth_scale_m: float = 0.001
    # The renderer's near and far clip planes (MuJoCo: znear / zfar × the model's extent).
    depth_clip_m: tuple[float, float] = (0.0, 0.0)
    # The depth preview's colour range, fixed for the run (from its first frame).
    depth_preview_m: tuple[float, float] = (0.0, 0.0)
    # Segmentation legend: object type ("geom", "site", …) → names by id ("" when unnamed), and the
    # type's mjtObj value (what a pixel's type channel holds).
    objects: dict[str, list[str]] = {}
    object_types: dict[str, int] = {}


class SimStarted(Event, kw_only=True):
    attempt: Attempt
    scene: str
    episodes: Annotated[int, msgspec.Meta(ge=1)]
    frames_per_episode: list[Count]
    fps: Fps
    width: Width  # of one view; a tiled frame is `width × len(cameras)` wide
    height: Height
    cameras: list[str]
    # Views stacked vertically in each frame (one video per camera); 1 for a single or tiled camera.
    views: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1
    tile: bool = False
    physics_dt: float
    gl_backend: str  # the GL backend, or the engine's device (cpu, cuda:0) for other engines
    gl_renderer: str
    session: Name
    outputs: OutputSpec
    # How this run's FrameBatch payloads are compressed (None: not announced, as by older producers).
    # Each batch's own `compression` is what a reader goes by.
    frame_compression: Literal["none", "zstd"] | None = None
    # The render engine, and how many episodes it runs at once as parallel worlds (1 for "gl").
    engine: Name = "gl"
    worlds: Annotated[int, msgspec.Meta(ge=1)] = 1
    # Labels of the vector channels in each frame's telemetry ("action", "qpos", "qvel", "sensordata",
    # "obs"): the encoder puts them into telemetry.jsonl's first row ("names"). Empty from older producers.
    telemetry_names: dict[str, list[str]] = {}
    # The streams of every frame (FrameBatch.streams), and how to read depth / segmentation.
    streams: list[StreamName] = msgspec.field(default_factory=lambda: ["rgb"])
    perception: Perception | None = None


class FrameStream(msgspec.Struct, frozen=True, kw_only=True):
    """One plane of every frame of a FrameBatch: which stream, in which pixel format."""

    stream: StreamName
    pix_fmt: PixFmt


class FrameBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Raw frames of one episode, msgpack on `simreel.frames.<run>.<attempt>.<episode>`.

    Several whole frames when they fit in the server's max_payload; one part of one frame
    (`part`/`parts`) when a frame alone is too big. `last` closes the episode; `aborted` tells the
    encoder the attempt died and nothing more will come.

    `compression` says what `frames` holds: "none" — `count` rgb24 frames back to back; "zstd" — a
    zstd stream that decompresses to exactly those bytes (simreel writes one zstd frame per video
    frame; parts of a split frame join into that frame's zstd stream). Packing counts compressed bytes.
    """

    run_id: RunId
    attempt: Attempt
    episode: Episode
    seq: Count
    first_index: Count
    count: Count
    width: Width
    height: Height
    pix_fmt: Literal["rgb24"] = "rgb24"
    # Planes of each frame, back to back, each `width × height` pixels of its pix_fmt; empty = one
    # rgb24 plane (as older producers send).
    streams: list[FrameStream] = []
    compression: Literal["none", "zstd"] = "none"
    times: list[float] = []
    frames: bytes = b""
    part: Count = 0
    parts: Annotated[int, msgspec.Meta(ge=1)] = 1
    telemetry: list[dict[str, Any]] = []
    last: bool = False
    aborted: bool = False


class EpisodeEnded(Event, kw_only=True):
    attempt: Attempt
    episode: Episode
    seed: int
    steps: Count
    frames: Count
    episode_return: float = msgspec.field(name="return", default=0.0)
    terminated: bool = False
    truncated: bool = True
    sim_time_s: float
    wall_s: float
    blank: bool = False
    frozen: bool = False
    warnings: list[str] = []


class SimCompleted(Event, kw_only=True):
    attempt: Attempt
    episodes: int
    frames: Count
    wall_s: float
    session: Name
    # How many ArtifactStored the run will produce (videos + scene + report + telemetry): a
    # client knows the run is finished when it has seen that many.
    expected_artifacts: Count
    report: dict[str, Any] = {}


FailureCode = Literal[
    "bad_request",
    "scene_invalid",
    "scene_forbidden",
    "policy_forbidden",
    "limit_exceeded",
    "render_failed",
    "blank_frames",
    "internal",
    "encode_failed",
    "store_failed",
    "timeout",
]


class SimFailed(Event, kw_only=True):
    attempt: int = 1
    code: FailureCode
    message: str
    field: str | None = None

    @classmethod
    def of(cls, run_id: str, attempt: int, code: FailureCode, message: str,
           field: str | None = None) -> "SimFailed":
        """The failure of one attempt, id `failed-<run_id>-<attempt>`: whoever reports it (simulator,
        a frame producer) and however often, the run's attempt fails once. Messages are capped."""
        return cls(event_id=f"failed-{run_id}-{attempt}", run_id=run_id, attempt=attempt, code=code,
                   message=message[:2000], field=field)


class SceneSaved(Event, kw_only=True):
    attempt: Attempt
    session: Name
    staged: str
    bytes: Count
    sha256: str


# --- encoder ---------------------------------------------------------------------------------------


class EpisodeSpan(msgspec.Struct, frozen=True, kw_only=True):
    """Where an episode sits inside a concatenated video."""

    episode: Episode
    first_frame: Count
    frames: Count
    start_s: float


class _EncodedVideo(Event, kw_only=True):
    attempt: Attempt
    session: Name
    episode: Episode | None  # None: all episodes back to back (concat layout)
    camera: str | None = None
    stream: StreamName = "rgb"
    format: FileFormat
    staged: str
    frames: Count
    fps: float
    duration_s: float
    width: int
    height: int
    codec: str
    bytes: Count
    sha256: str
    encode_ms: float
    spans: list[EpisodeSpan] = []
    warnings: list[str] = []


class VideoAvailable(_EncodedVideo, kw_only=True):
    """An encoded video in staging, to be stored."""


class VideoHeld(_EncodedVideo, kw_only=True):
    """An encoded video of a candidate episode (the run has `outputs.keep`), waiting in staging for its
    episode's EpisodeKept (then announced as VideoAvailable) or EpisodeDiscarded (then deleted)."""


class TelemetryStaged(Event, kw_only=True):
    """Per-frame telemetry of the whole run (one JSON line per frame, with its time inside each video),
    staged by the encoder, which already reads every frame."""

    attempt: Attempt
    session: Name
    staged: str
    rows: Count
    bytes: Count
    sha256: str


class EncodeFailed(Event, kw_only=True):
    attempt: Attempt
    code: FailureCode = "encode_failed"
    message: str


class _KeepDecided(Event, kw_only=True):
    """A keep rule's decision on one candidate episode, with the outcome it was decided from."""

    attempt: Attempt
    session: Name
    episode: Episode
    # The episode's index among the candidates the rule saw (a recorder's env episode; a run's episode).
    candidate: Count
    rule: Annotated[str, msgspec.Meta(max_length=500)]  # the whole rule in words
    reason: Annotated[str, msgspec.Meta(max_length=2000)]  # what decided this episode
    seed: int | None = None
    steps: Count = 0
    episode_return: float = msgspec.field(name="return", default=0.0)
    terminated: bool = False
    truncated: bool = False


class EpisodeKept(_KeepDecided, kw_only=True):
    """The episode's videos are kept: its VideoHeld become VideoAvailable and are stored."""


class EpisodeDiscarded(_KeepDecided, kw_only=True):
    """The episode's videos are not kept: their staged files are deleted and no video artifact is
    stored. Its telemetry and the run report are stored as for any episode."""


# --- uploader / retention --------------------------------------------------------------------------


class ArtifactStored(Event, kw_only=True):
    kind: ArtifactKind
    format: str
    episode: Episode | None = None
    camera: str | None = None
    session: Name
    bucket: str = ""
    key: str
    url: str
    path: str | None = None
    expires_at: float | None = None
    bytes: Count
    sha256: str
    content_type: str
    source_event_id: str = ""
    # The staged file this artifact was stored from (none for the report): the uploader deletes
    # it once this event is in the log.
    staged: str | None = None


class StoreFailed(Event, kw_only=True):
    code: FailureCode = "store_failed"
    message: str
    key: str = ""


class ArtifactDeleted(Event, kw_only=True):
    session: Name
    key: str
    bucket: str = ""
    reason: Literal["count", "age", "bytes", "manual"]


class SceneFileDeleted(Event, kw_only=True):
    """Retention removed a scene file from the scene-file store: no run that still exists references
    it, and none has for `unreferenced_s` seconds. `run_id` is "scene-files"."""

    sha256: Sha256
    size: Count
    unreferenced_s: float


class DeleteRequested(Event, kw_only=True):
    """A person or system asks for a run's artifacts to go (`simreel rm`); retention carries it out."""

    reason: Literal["manual"] = "manual"
    requested_by: str = ""


# --- live recorders (training loops) --------------------------------------------------------------


class RecorderAnnounced(Event, kw_only=True):
    """A recorder wrapped around a live env says what it is doing, so a ui can list and steer it.

    `run_id` is the recorder id. Re-announced at every episode boundary and once more at close
    (`state="closed"`), so the latest announcement per recorder is its current state.
    """

    session: Name
    env_id: Annotated[str, msgspec.Meta(max_length=200)] = ""
    trigger: Annotated[str, msgspec.Meta(max_length=200)]  # human-readable, e.g. "every 2 episodes"
    episodes_seen: Count = 0
    videos_recorded: Count = 0
    recording_next: bool = False
    cadence: Annotated[int, msgspec.Meta(ge=1)] | None = None  # every N episodes; None = the trigger
    state: Literal["running", "closed"] = "running"


CaptureAction = Literal["record_next", "every", "off", "stop"]


class CaptureControlRequested(Event, kw_only=True):
    """Ask a live recorder (`run_id` = recorder id) to change what it records, from the next episode
    boundary on: record the next episode, record every N episodes, record nothing more ("off"), or
    stop recording for good ("stop")."""

    action: CaptureAction
    every: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None  # for "every"
    requested_by: Annotated[str, msgspec.Meta(max_length=200)] = ""


class CaptureControlApplied(Event, kw_only=True):
    """A recorder took a control request into effect at the start of `episode`."""

    request_event_id: str
    action: CaptureAction
    every: int | None = None
    episode: Count


class KeepRuleRequested(Event, kw_only=True):
    """Ask a live recorder (`run_id` = recorder id) to decide with another keep rule from the next
    episode boundary on (`keep` null: keep every candidate). Candidates still waiting under the old
    rule (worst/best k) are decided by it first."""

    keep: KeepRule | None = None
    requested_by: Annotated[str, msgspec.Meta(max_length=200)] = ""


class KeepRuleApplied(Event, kw_only=True):
    """A recorder took a keep rule into effect at the start of `episode` (`rule` in words, "" for none)."""

    request_event_id: str
    rule: Annotated[str, msgspec.Meta(max_length=500)]
    episode: Count


# --- plumbing --------------------------------------------------------------------------------------


class DeadLettered(Event, kw_only=True):
    """A message a service could not use: kept in the event log with the reason, never retried again."""

    run_id: str = "unknown"  # type: ignore[assignment]  # the bad message may not have a usable run id
    service: str
    subject: str
    reason: str
    deliveries: int = 1
    payload_preview: str = ""

    @classmethod
    def of(cls, key: str, *, service: str, subject: str, reason: str, run_id: str | None = None,
           deliveries: int = 1, payload: bytes = b"", preview_bytes: int = 200) -> "DeadLettered":
        """The one way a message is dead-lettered. Id `dl-<key>`, where `key` names the message (e.g.
        `<service>-<stream sequence>`), so a redelivered message is reported once; run_id 'unknown'
        unless a valid run id is given (a dead letter under a healthy run's id would mark it failed);
        the reason capped; a preview of the payload's first bytes."""
        return cls(event_id=f"dl-{key}", run_id=run_id if run_id and is_run_id(run_id) else "unknown",
                   service=service, subject=subject, reason=reason[:2000], deliveries=deliveries,
                   payload_preview=payload[:preview_bytes].decode("utf-8", "replace"))


class FrameBatchView(FrameBatch, frozen=True, kw_only=True):
    """FrameBatch as the encoder reads it: `frames` is a view into the received message, not a copy."""

    frames: memoryview = memoryview(b"")


AnyEvent = Union[
    SimRequested,
    SimStarted,
    EpisodeEnded,
    SimCompleted,
    SimFailed,
    SceneSaved,
    SceneFileDeleted,
    VideoAvailable,
    VideoHeld,
    TelemetryStaged,
    EncodeFailed,
    EpisodeKept,
    EpisodeDiscarded,
    ArtifactStored,
    StoreFailed,
    ArtifactDeleted,
    DeleteRequested,
    RecorderAnnounced,
    CaptureControlRequested,
    CaptureControlApplied,
    KeepRuleRequested,
    KeepRuleApplied,
    DeadLettered,
]

PUBLIC_EVENTS = (SimRequested, VideoAvailable, ArtifactStored, SimCompleted, SimFailed, ArtifactDeleted,
                 EpisodeDiscarded)

_json_decoder = msgspec.json.Decoder(AnyEvent)
_json_encoder = msgspec.json.Encoder()
_frames_decoder = msgspec.msgpack.Decoder(FrameBatch)
_frames_view_decoder = msgspec.msgpack.Decoder(FrameBatchView)
_frames_encoder = msgspec.msgpack.Encoder()


def decode(data: bytes) -> AnyEvent:
    """Decode and validate any event; raises msgspec.ValidationError / DecodeError with a precise path."""
    return _json_decoder.decode(data)


def encode(event: Event) -> bytes:
    return _json_encoder.encode(event)


def decode_frames(data: bytes) -> FrameBatch:
    return _frames_decoder.decode(data)


def decode_frames_view(data: bytes) -> FrameBatchView:
    """Zero-copy decode: the frames stay in `data` (keep it alive while the view is used)."""
    return _frames_view_decoder.decode(data)


def encode_frames(batch: FrameBatch) -> bytes:
    return _frames_encoder.encode(batch)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the public events, for systems that talk to simreel without importing it."""
    (_, components) = msgspec.json.schema_components(PUBLIC_EVENTS, ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "simreel events",
        "description": f"simreel event schema version {SCHEMA_VERSION}; the `type` field tags each event",
        "oneOf": [{"$ref": f"#/$defs/{cls.__name__}"} for cls in PUBLIC_EVENTS],
        "$defs": components,
    }
