"""`VideoInfo`: what every writer/converter returns, so the encoder service can log one line per video
and put the same fields on the artifact event without re-probing the file."""
from __future__ import annotations

import os

import msgspec

from simreel.contract.digest import file_digest  # noqa: F401 - re-exported for the encoder


class VideoInfo(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    frames: int
    fps: int
    duration_s: float
    width: int  # of the encoded picture (after any padding), never the requested size
    height: int
    codec: str  # "libx264" | "libsvtav1" | "gif" | "png"
    bytes: int
    sha256: str
    encode_ms: float

    def to_dict(self) -> dict:
        return msgspec.structs.asdict(self)


def check_closable(writer: object, path: str | os.PathLike, *, aborted: bool, frames: int, abort) -> None:
    """What every writer's close() refuses: after abort(), or with no frame (the partial file goes)."""
    from simreel.media.errors import NoFramesError, WriterClosedError

    if aborted:
        raise WriterClosedError(f"close() on an aborted {type(writer).__name__} ({path})")
    if frames == 0:
        abort()
        raise NoFramesError(f"no frames were written to {path}; nothing to write")


def finished(path: str | os.PathLike, *, kind: str, frames: int, fps: int, width: int, height: int, codec: str,
             encode_s: float, **log_extra) -> VideoInfo:
    """The VideoInfo of a file a writer just completed, with the one log line per video."""
    from simreel.runtime import log

    size, sha = file_digest(path)
    info = VideoInfo(path=str(path), frames=frames, fps=fps, duration_s=frames / fps if fps else 0.0, width=width,
                     height=height, codec=codec, bytes=size, sha256=sha, encode_ms=round(encode_s * 1000, 3))
    log.get("simreel.media").info("media.video.written", type=kind, **log_extra, **info.to_dict())
    return info
