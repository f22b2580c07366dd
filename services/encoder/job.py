"""One run attempt's encode job: frames in, finished files out, in constant memory.

Frames are written to every open writer as they arrive (per-episode files and the concatenated
file at once, from one pass over the stream), so nothing is buffered beyond one frame. All calls into
PyAV happen in worker threads; the event loop only moves bytes.
"""
from __future__ import annotations

import asyncio
import json
import os
import threading

import numpy as np
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simreel.contract import events as ev
from simreel.contract import streams
from simreel.transport.framing import Frame
from simreel.contract.outputs import video_file_name
from simreel.media.gif import mp4_to_gif
from simreel.media.info import VideoInfo, file_digest
from simreel.media.colormap import DepthColours, segmentation_rgb
from simreel.media.lossless import LosslessWriter
from simreel.media.mp4 import Mp4Writer
from simreel.media.png import PngZipWriter
from simreel.media.stats import FrameStats


@dataclass
class Finished:
    """A file ready to stage and announce."""

    episode: int | None
    format: str
    info: VideoInfo
    camera: str | None = None
    spans: list[ev.EpisodeSpan] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stream: str = "rgb"


file_name = video_file_name


class JobCalls:
    """Runs one job's PyAV calls in worker threads, one at a time. Cancelling an await does not stop a
    thread that already runs: an abort (SIGTERM mid-encode) must wait for a running write to return,
    as closing a codec under it crashes the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    async def __call__(self, fn, *args):
        return await asyncio.to_thread(self._locked, fn, *args)

    def _locked(self, fn, *args):
        with self._lock:
            return fn(*args)


class _StreamFiles:
    """A depth or segmentation stream of one video: the lossless file and its colour preview."""

    def __init__(self, workdir: Path, episode: int | None, st: ev.SimStarted, threads: int, camera: str | None,
                 stream: str, colours) -> None:
        o = st.outputs
        self.stream, self.colours = stream, colours
        self.lossless = LosslessWriter(workdir / file_name(episode, "mkv", camera, stream), width=st.width,
                                       height=st.height, fps=st.fps, pix_fmt=streams.PIX_FMT[stream])
        self.preview = Mp4Writer(workdir / file_name(episode, "mp4", camera, stream), width=st.width,
                                 height=st.height, fps=st.fps, crf=o.crf, codec=o.codec, preset=o.preset,
                                 threads=threads)
        self._shape = (st.height, st.width) + ((4,) if stream == "segmentation" else ())
        self._dtype = "<u2" if stream == "depth" else np.uint8

    def write(self, plane) -> None:
        arr = np.frombuffer(plane, self._dtype).reshape(self._shape)
        self.lossless.write(arr)
        self.preview.write(self.colours(arr))

    def mark(self, label: str) -> None:
        self.preview.mark(label)

    def finish(self) -> list[tuple[str, VideoInfo]]:
        return [("mkv", self.lossless.close()), ("mp4", self.preview.close())]

    def abort(self) -> None:
        self.lossless.abort()
        self.preview.abort()


class _Outputs:
    """The writers of one video (an episode, or the concatenation)."""

    def __init__(self, workdir: Path, episode: int | None, st: ev.SimStarted, threads: int,
                 camera: str | None = None, colours: dict | None = None) -> None:
        o = st.outputs
        self.episode = episode
        self.camera = camera
        self.formats = list(dict.fromkeys(o.formats))
        self.outputs = o
        self.workdir = workdir
        self.mp4_path = workdir / file_name(episode, "mp4", camera)
        need_mp4 = "mp4" in self.formats or "gif" in self.formats
        self.mp4 = Mp4Writer(self.mp4_path, width=st.width, height=st.height, fps=st.fps, crf=o.crf, codec=o.codec,
                             preset=o.preset, threads=threads) if need_mp4 else None
        self.png = PngZipWriter(workdir / file_name(episode, "png", camera), width=st.width, height=st.height) \
            if "png" in self.formats else None
        self.stats = FrameStats(st.width, st.height)
        self.streams = [_StreamFiles(workdir, episode, st, threads, camera, x, (colours or {})[x])
                        for x in st.streams if x != "rgb"]
        self.spans: list[ev.EpisodeSpan] = []
        self.frames = 0
        self.fps = st.fps

    def start_episode(self, episode: int) -> None:
        if self.episode is None:  # concat: remember where each episode starts
            if self.mp4 is not None and self.frames:
                self.mp4.mark(f"episode-{episode}")
            for x in self.streams:
                if self.frames:
                    x.mark(f"episode-{episode}")
            self.spans.append(ev.EpisodeSpan(episode=episode, first_frame=self.frames, frames=0,
                                             start_s=self.frames / self.fps))

    def end_episode(self, episode: int, frames: int) -> None:
        if self.episode is None and self.spans and self.spans[-1].episode == episode:
            s = self.spans[-1]
            self.spans[-1] = ev.EpisodeSpan(episode=episode, first_frame=s.first_frame, frames=frames, start_s=s.start_s)

    def write(self, pixels: bytes, planes: list | None = None) -> None:
        """`pixels`: the rgb24 view; `planes`: the other streams' views, in the run's stream order."""
        if self.mp4 is not None:
            self.mp4.write(pixels)
        if self.png is not None:
            self.png.write(pixels)
        for x, plane in zip(self.streams, planes or ()):
            x.write(plane)
        self.stats.update(pixels)
        self.frames += 1

    def finish(self) -> list[Finished]:
        out: list[Finished] = []
        warnings = self.stats.warnings()
        mp4_info = self.mp4.close() if self.mp4 is not None else None
        if "mp4" in self.formats and mp4_info is not None:
            out.append(Finished(self.episode, "mp4", mp4_info, self.camera, list(self.spans), warnings))
        if "gif" in self.formats and mp4_info is not None:
            gif = mp4_to_gif(self.mp4_path, self.workdir / file_name(self.episode, "gif", self.camera),
                             fps=self.outputs.gif_fps, width=self.outputs.gif_width)
            out.append(Finished(self.episode, "gif", gif, self.camera, list(self.spans), warnings))
            if "mp4" not in self.formats:
                self.mp4_path.unlink(missing_ok=True)
        if self.png is not None:
            out.append(Finished(self.episode, "png", self.png.close(), self.camera, list(self.spans), warnings))
        for x in self.streams:
            for fmt, info in x.finish():
                out.append(Finished(self.episode, fmt, info, self.camera, list(self.spans), [], x.stream))
        return out

    def abort(self) -> None:
        for x in self.streams:
            try:
                x.abort()
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass
        for w in (self.mp4, self.png):
            if w is not None:
                try:
                    w.abort()
                except Exception:  # noqa: BLE001 - best effort cleanup
                    pass


class EncodeJob:
    def __init__(self, st: ev.SimStarted, workdir: Path, *, threads: int = 1) -> None:
        self.st = st
        self.workdir = workdir
        self.threads = threads
        o = st.outputs
        self.per_episode = o.layout in ("per-episode", "both")
        # One video per stacked view (camera); a single or tiled camera is one view named None.
        self.view_names: list[str | None] = list(st.cameras) if st.views > 1 else [None]
        self.view_bytes = st.width * st.height * 3
        # Planes of each frame (rgb first), and each view's bytes in each plane.
        self.planes = streams.frame_streams(st.streams)
        self.plane_view_bytes = [st.width * st.height * streams.BYTES_PER_PIXEL[p.pix_fmt] for p in self.planes]
        self.colours = _stream_colours(st)
        self.concat = [_Outputs(workdir, None, st, threads, cam, self.colours) for cam in self.view_names] \
            if o.layout in ("concat", "both") else []
        self.current: list[_Outputs] = []
        self.current_episode: int | None = None
        self.episode_frames = 0
        self.done_episodes: set[int] = set()
        self.telemetry_path = workdir / "telemetry.jsonl"
        self._telemetry = open(self.telemetry_path, "w", encoding="utf-8") if o.telemetry else None
        self.telemetry_rows = 0
        # The labels of the vector channels (joint, sensor, actuator names) go into the first line, as
        # a "names" key of the first frame row: every line stays a frame row, so readers that count
        # or index lines keep working.
        self._names: dict[str, list[str]] | None = dict(st.telemetry_names) or None

    def begin_episode(self, episode: int) -> None:
        self.current_episode = episode
        self.episode_frames = 0
        if self.per_episode:
            self.current = [_Outputs(self.workdir, episode, self.st, self.threads, cam, self.colours)
                            for cam in self.view_names]
        for c in self.concat:
            c.start_episode(episode)

    def write(self, episode: int, frames: list[Frame]) -> None:
        n = len(self.view_names)
        for f in frames:
            if self.planes:
                views, extra = self._split(f.pixels)
            else:
                views = [f.pixels] if n == 1 else [f.pixels[i * self.view_bytes:(i + 1) * self.view_bytes]
                                                   for i in range(n)]
                extra = [None] * n
            for out, px, more in zip(self.current, views, extra):
                out.write(px, more)
            concat_index = None
            if self.concat:
                concat_index = self.concat[0].frames
                for out, px, more in zip(self.concat, views, extra):
                    out.write(px, more)
            if self._telemetry is not None:
                row: dict[str, Any] = {"episode": episode, "frame": f.index, "video_t": f.index / self.st.fps}
                if concat_index is not None:
                    row["concat_frame"] = concat_index
                    row["concat_t"] = concat_index / self.st.fps
                row.update(f.telemetry or {"t": f.t})
                if self._names is not None:
                    row["names"], self._names = self._names, None
                self._telemetry.write(json.dumps(row, separators=(",", ":")) + "\n")
                self.telemetry_rows += 1
            self.episode_frames += 1

    def _split(self, frame) -> tuple[list, list[list]]:
        """A frame of several planes → each view's rgb and each view's other planes (views, no copies)."""
        n = len(self.view_names)
        plane_views: list[list] = []
        pos = 0
        view = memoryview(frame)
        for size in self.plane_view_bytes:
            plane_views.append([view[pos + i * size:pos + (i + 1) * size] for i in range(n)])
            pos += size * n
        if pos != len(view):
            raise ValueError(f"frame of {len(view)} bytes, its {len(self.planes)} planes make {pos}")
        return plane_views[0], [[p[i] for p in plane_views[1:]] for i in range(n)]

    def end_episode(self, episode: int) -> list[Finished]:
        self.done_episodes.add(episode)
        for c in self.concat:
            c.end_episode(episode, self.episode_frames)
        out: list[Finished] = []
        for cur in self.current:
            out += cur.finish()
        self.current = []
        return out

    def finish(self) -> tuple[list[Finished], Path | None]:
        out = [f for c in self.concat for f in c.finish()]
        tel = None
        if self._telemetry is not None:
            self._telemetry.close()
            self._telemetry = None
            tel = self.telemetry_path
        return out, tel

    def abort(self) -> None:
        for o in (*self.current, *self.concat):
            o.abort()
        if self._telemetry is not None:
            self._telemetry.close()
            self._telemetry = None

    @property
    def complete(self) -> bool:
        return len(self.done_episodes) >= self.st.episodes


def _stream_colours(st: ev.SimStarted) -> dict:
    """How each stream beyond rgb becomes its preview's colours, fixed for the run."""
    p = st.perception or ev.Perception()
    out: dict = {}
    if "depth" in st.streams:
        near, far = p.depth_preview_m if p.depth_preview_m[1] > p.depth_preview_m[0] else (0.0, 10.0)
        out["depth"] = DepthColours(near, far)
    if "segmentation" in st.streams:
        lut = streams.id_colours(p)
        out["segmentation"] = lambda packed: segmentation_rgb(packed, lut)
    return out


def telemetry_digest(path: Path) -> tuple[int, str]:
    return file_digest(os.fspath(path))
