"""What a request will produce, computed the same way by the simulator (to announce it) and by
clients (to show progress and to know when a run is finished)."""
from __future__ import annotations

from simreel.contract import events as ev


def video_file_name(episode: int | None, fmt: str, camera: str | None = None, stream: str = "rgb") -> str:
    """The one naming rule for video files, staged and stored: `episode-0003[-camera].mp4`, `all.gif`,
    `episode-0003-frames.zip` (PNG frames); other streams than rgb add theirs:
    `episode-0003[-camera]-depth.mkv` (lossless) and `episode-0003[-camera]-depth.mp4` (preview)."""
    stem = "all" if episode is None else f"episode-{episode:04d}"
    if camera:
        stem += f"-{camera}"
    if stream != "rgb":
        stem += f"-{stream}"
    return f"{stem}-frames.zip" if fmt == "png" else f"{stem}.{fmt}"


# The files of each stream other than rgb (whose files are the request's formats): lossless + preview.
STREAM_FORMATS: dict[str, tuple[str, ...]] = {"depth": ("mkv", "mp4"), "segmentation": ("mkv", "mp4")}


def artifact_kind(stream: str, fmt: str) -> ev.ArtifactKind:
    """What an encoded file is, for the store, retention and the ui."""
    if stream == "rgb":
        return {"mp4": "video", "gif": "gif", "png": "frames"}[fmt]  # type: ignore[return-value]
    return stream if fmt == "mkv" else f"{stream}_preview"  # type: ignore[return-value]


def views(req: ev.SimRequested) -> int:
    """Separate videos per episode: one per named camera, unless they are tiled into one."""
    cams = len(req.render.cameras)
    return cams if cams > 1 and not req.render.tile else 1


def video_outputs(req: ev.SimRequested | ev.SimStarted) -> int:
    """VideoAvailable count of a run: (formats + 2 per stream beyond rgb) × (each episode and/or one
    concatenated file) × views."""
    outs = req.outputs
    per_episode = req.episodes if outs.layout in ("per-episode", "both") else 0
    concat = 1 if outs.layout in ("concat", "both") else 0
    n_views = req.views if isinstance(req, ev.SimStarted) else views(req)
    recorded = req.streams if isinstance(req, ev.SimStarted) else req.render.streams
    files = len(set(outs.formats)) + sum(len(STREAM_FORMATS[x]) for x in set(recorded) if x != "rgb")
    return files * (per_episode + concat) * n_views


def episode_videos(st: ev.SimStarted) -> int:
    """Video files of one episode (formats × views): what a discarded episode takes from the count."""
    per_episode = st.outputs.layout in ("per-episode", "both")
    return len(set(st.outputs.formats)) * st.views if per_episode else 0


def expected_artifacts(req: ev.SimRequested | ev.SimStarted, *, scene_saved: bool = True) -> int:
    """ArtifactStored count of a finished run: videos + report.json (+ scene.xml when the run has a
    SceneSaved: MJCF scenes do, Gymnasium scenes and recorder runs do not) (+ telemetry.jsonl).

    The one home of this rule: SimCompleted.expected_artifacts carries it to clients, which wait for
    exactly that many ArtifactStored; a second, disagreeing count would make them wait forever. With a
    keep rule it counts every candidate's videos; each EpisodeDiscarded takes `episode_videos` off."""
    return video_outputs(req) + 1 + (1 if scene_saved else 0) + (1 if req.outputs.telemetry else 0)
