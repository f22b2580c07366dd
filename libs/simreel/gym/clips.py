"""One stream of videos (one at a time) on a RecorderThread, for wrappers that decide themselves where
a video starts and ends: the vector RecordVideo (one stream for the grid, or one per sub-env) and
SB3's VecVideoRecorder.

A clip begins on the bus with its first frame (its size is known then), streams every frame through
the recorder's bounded hand-off, and ends with an episode summary; once stored, its files are linked
into `video_folder` under the name the wrapper chose and `on_video` is called.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from simreel.contract import events as ev
from simreel.recorder import RecordedRun, RecorderThread
from simreel.contract.keep import Outcome
from simreel.gym.files import jsonable, link, local_name, run_prefix
from simreel.gym.keeping import Candidates
from simreel.gym.video_info import RecordedVideo

VideoCallback = Callable[[RecordedVideo], None]


class ClipStream:
    """Not thread-safe: driven from the env's thread; results arrive in the recorder's thread."""

    def __init__(self, recorder: RecorderThread, *, video_folder: str, tag: str, name_prefix: str, fps: int,
                 scene: str, on_video: VideoCallback | None = None, logger: Any = None,
                 report: Mapping[str, Any] | None = None, keep: Any = None,
                 outputs: ev.OutputSpec | None = None) -> None:
        self.recorder = recorder
        self.outputs = outputs  # the wrapper's own (with its keep rule), else the recorder's
        self.candidates = Candidates(keep, recorder) if keep is not None else None
        self.final_info: dict[str, Any] = {}  # the episode's last info, set by the wrapper when it ends
        self._clips = 0
        self.video_folder = video_folder
        self.tag = tag
        self.name_prefix = name_prefix
        self.fps = fps
        self.scene = scene
        self.on_video = on_video
        self.log = logger
        self.report = dict(report or {})
        self.name: str | None = None
        self.frames = 0
        self._meta: dict[str, Any] = {}
        self._size: tuple[int, int] | None = None
        self._steps = 0
        self._return = 0.0
        self._last: tuple[bool, bool] = (False, False)

    @property
    def recording(self) -> bool:
        return self.name is not None

    def start(self, name: str, **meta: Any) -> None:
        if self.recording:
            self.stop()
        self.name, self.frames, self._size = name, 0, None
        self._meta = {"name": name, "wrapper": self.tag, **meta}
        self._steps, self._return, self._last = 0, 0.0, (False, False)
        self.final_info = {}
        self._clips += 1

    def add(self, frame: np.ndarray, row: dict[str, Any]) -> None:
        """Stream one frame (HxWx3 or HxWx4 uint8) with its telemetry row."""
        if frame.ndim == 3 and frame.shape[2] == 4:
            frame = frame[..., :3]
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"video frames must be HxWx3 uint8 arrays, got shape {frame.shape} dtype {frame.dtype}")
        height, width = int(frame.shape[0]), int(frame.shape[1])
        if self._size is None:
            ev.check_frame_size(width, height)
            self._size = (width, height)
            suffix = self.name[len(self.name_prefix):].lstrip("-") if self.name.startswith(self.name_prefix) \
                else self.name
            run_id = f"{run_prefix(self.name_prefix)}-{self.tag}-{re.sub(r'[^A-Za-z0-9_-]', '-', suffix)}"[:64]
            self.recorder.begin(run_id, width=width, height=height, fps=max(1, int(round(self.fps))),
                                meta=self._meta, on_result=self._on_result, scene=self.scene, outputs=self.outputs,
                                physics_dt=1.0 / max(1, self.fps))
        elif self._size != (width, height):
            raise ValueError(f"frame size changed from {self._size[0]}x{self._size[1]} to {width}x{height} during "
                             f"recording {self.name}: videos need frames of a constant size")
        if row.get("reward") is not None:
            self._steps += 1
            r = row["reward"]
            if isinstance(r, (list, tuple, np.ndarray)) and len(r):
                r = float(np.mean(r))  # a tiled clip: the mean over its sub-envs
            if isinstance(r, (int, float, np.number)):
                self._return += float(r)
            if "terminated" in row or "truncated" in row:
                self._last = (bool(np.any(row.get("terminated", False))), bool(np.any(row.get("truncated", False))))
        self.recorder.frame_array(frame, {k: jsonable(v) for k, v in row.items()})
        self.frames += 1

    def stop(self) -> None:
        if not self.recording:
            return
        if self.frames:
            run = self.recorder.end(seed=-1, steps=self._steps, episode_return=self._return, terminated=self._last[0],
                              truncated=self._last[1], report={**self.report, "video": self.name,
                                                                 **{k: v for k, v in self._meta.items()
                                                                    if k not in ("wrapper",)}})
            if self.candidates is not None:
                index = self._meta.get("episode")
                self.candidates.ended(run, Outcome(
                    index=self._clips - 1 if index is None else index, length=self._steps, episode_return=self._return,
                    terminated=self._last[0], truncated=self._last[1], info=dict(self.final_info)))
        self.name = None
        self.frames = 0

    # --- results (recorder thread) -----------------------------------------------------------------

    def note_end(self, *, terminated: bool, truncated: bool, info: Mapping[str, Any] | None = None) -> None:
        """How the clip's episode(s) ended, for wrappers whose telemetry rows do not say it."""
        self._last = (bool(terminated), bool(truncated))
        self.final_info = dict(info or {})

    def finish(self) -> None:
        """No more clips: every keep decision still pending is made (before the recorder closes)."""
        self.stop()
        if self.candidates is not None:
            self.candidates.close()

    def _on_result(self, run: RecordedRun) -> None:
        if run.discarded:
            if self.log is not None:
                self.log.info("video_discarded", video=run.meta.get("name"), reason=run.decision.reason)
            return
        if run.status == "completed":
            for a in run.artifacts:
                if a.kind in ("video", "gif", "frames") and a.path and os.path.exists(a.path):
                    link(a.path, Path(self.video_folder) / local_name(run.meta["name"], a.format))
        elif self.log is not None:
            self.log.warning("video_not_stored", video=run.meta.get("name"), status=run.status, error=run.error)
        if self.on_video is not None:
            self.on_video(self.info(run))

    def info(self, r: RecordedRun) -> RecordedVideo:
        return recorded_video(r, self.video_folder, self.fps)


def recorded_video(r: RecordedRun, video_folder: str | os.PathLike, fps: float,
                   status: str | None = None) -> RecordedVideo:
    """What every recorder reports of one run: its video (linked into video_folder when local)."""
    video = video_artifact(r)
    name = r.meta.get("name")
    path = None
    if video is not None and video.path:
        local = Path(video_folder) / local_name(name, video.format)
        path = str(local) if local.exists() else None
    tel, rep = r.artifact("telemetry"), r.artifact("report")
    d = r.decision
    if d is not None and not d.kept and r.status == "completed":
        status = status or "discarded"
    return RecordedVideo(name=name, path=path, url=video.url if video else None, run_id=r.run_id,
                         frames=r.frames, fps=fps, status=status or r.status, error=r.error,
                         kept=None if d is None else d.kept, reason=None if d is None else d.reason,
                         telemetry_url=tel.url if tel else None, report_url=rep.url if rep else None,
                         store_latency_s=r.store_latency_s, episode=r.meta.get("episode"),
                         step=r.meta.get("step"), env=r.meta.get("env"))


def video_artifact(run: RecordedRun) -> ev.ArtifactStored | None:
    for kind, fmt in (("video", "mp4"), ("gif", "gif"), ("frames", "png")):
        a = run.artifact(kind, fmt)
        if a is not None:
            return a
    return None
