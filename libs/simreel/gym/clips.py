"""One stream of videos (one at a time) on a RecorderThread: the life of a clip for every recorder
wrapper, whichever decides where a clip starts and ends: the single-env RecordVideo (EnvClips), the
vector RecordVideo (one stream for the grid, or one per sub-env) and SB3's VecVideoRecorder.

A clip begins on the bus with its first frame (its size is known then), streams every frame (and the
planes of its other streams) through the recorder's bounded hand-off, and ends with an episode
summary; with a keep rule, its outcome then goes to the rule. Once stored, its files are linked into
`video_folder` under the name the wrapper chose and `on_video` is called.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import msgspec
import numpy as np

from simreel.contract import events as ev
from simreel.contract.keep import Outcome
from simreel.gym.files import jsonable, link, local_name, run_prefix
from simreel.gym.keeping import Candidates, keep_outputs
from simreel.gym.video_info import RecordedVideo
from simreel.recorder import RecordedRun, RecorderThread

VideoCallback = Callable[[RecordedVideo], None]

_PLAIN = (bool, int, float, str, type(None))  # telemetry values sent as they are
_VIDEO_KINDS = ("video", "gif", "frames")
_DEPTH_KINDS = ("depth", "depth_preview")


class ClipStream:
    """Not thread-safe: driven from the env's thread; results arrive in the recorder's thread.

    `tell_unstored`: whether `on_video` also hears of videos that failed or timed out (the vector and
    SB3 recorders), or only of stored ones (the single-env RecordVideo)."""

    def __init__(self, recorder: RecorderThread, *, video_folder: str, tag: str, name_prefix: str, fps: int,
                 scene: str, on_video: VideoCallback | None = None, logger: Any = None,
                 report: Mapping[str, Any] | None = None, keep: Any = None,
                 outputs: ev.OutputSpec | None = None, tell_unstored: bool = True) -> None:
        self.recorder = recorder
        self.outputs = outputs  # the wrapper's own (with its keep rule), else the recorder's
        self.keep = keep
        self.candidates = Candidates(keep, recorder) if keep is not None else None
        self.final_info: dict[str, Any] = {}  # the episode's last info, set by the wrapper when it ends
        self._clips = 0
        self.video_folder = video_folder
        self.tag = tag
        self.name_prefix = name_prefix
        self.fps = fps
        self.scene = scene
        self.on_video = on_video
        self.tell_unstored = tell_unstored
        self.log = logger
        self.report = dict(report or {})
        self.name: str | None = None
        self.frames = 0
        self.seed: int | None = None
        self._meta: dict[str, Any] = {}
        self._candidate = True
        self._size: tuple[int, int] | None = None
        self._steps = 0
        self._return = 0.0
        self._last: tuple[bool, bool] = (False, False)

    @property
    def recording(self) -> bool:
        return self.name is not None

    @property
    def steps(self) -> int:
        """Steps of the current clip so far (frames that carry a reward)."""
        return self._steps

    @property
    def meta(self) -> Mapping[str, Any]:
        """The current clip's labels: its name, the wrapper's tag and what start() was given."""
        return self._meta

    def start(self, name: str, *, seed: int | None = None, candidate: bool = True, **meta: Any) -> None:
        """Begin a clip (ending the current one first). `seed`: the episode's reset seed, when the clip
        starts with it; `candidate`: whether a keep rule decides on it (whole episodes only)."""
        if self.recording:
            self.stop()
        self.name, self.frames, self._size, self.seed, self._candidate = name, 0, None, seed, candidate
        self._meta = {"name": name, "wrapper": self.tag, **meta}
        self._steps, self._return, self._last = 0, 0.0, (False, False)
        self.final_info = {}
        self._clips += 1

    def add(self, frame: np.ndarray, row: dict[str, Any], planes: Sequence[np.ndarray] = (), *,
            converted: bool = False) -> None:
        """Stream one frame (HxWx3 or HxWx4 uint8) with its telemetry row; `planes`: the same frame's
        other streams, in the order of the run's streams (begin_details says which). `converted`: the
        row's values are JSON-able already (files.jsonable), so they are sent as they are."""
        if frame.ndim == 3 and frame.shape[2] == 4:
            frame = frame[..., :3]
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(self.bad_frame.format(shape=frame.shape, dtype=frame.dtype))
        height, width = int(frame.shape[0]), int(frame.shape[1])
        if self._size is None:
            ev.check_frame_size(width, height)
            self._size = (width, height)
            self._begin(width, height, planes)
        elif self._size != (width, height):
            raise ValueError(self.size_changed.format(was=self._size, width=width, height=height, name=self.name))
        sent = row if converted else {k: v if type(v) in _PLAIN else jsonable(v) for k, v in row.items()}
        reward = sent.get("reward")
        if reward is not None:
            self._steps += 1
            if type(reward) is list:  # a tiled clip: the mean over its sub-envs, in their own dtype
                reward = float(np.mean(row["reward"])) if reward else None
            if isinstance(reward, (int, float)):
                self._return += reward
            if "terminated" in row or "truncated" in row:
                self._last = (_any(row.get("terminated", False)), _any(row.get("truncated", False)))
        self.recorder.frame_array(frame, sent, planes)
        self.frames += 1

    def stop(self) -> RecordedRun | None:
        """End the current clip: its run's episode ends (a clip without frames leaves nothing)."""
        if not self.recording:
            return None
        run = None
        if self.frames:
            run = self.recorder.end(seed=-1 if self.seed is None else int(self.seed), steps=self._steps,
                                    episode_return=self._return, terminated=self._last[0], truncated=self._last[1],
                                    **self.end_details())
            if self.candidates is not None and self._candidate:
                index = self._meta.get("episode")
                self.candidates.ended(run, Outcome(
                    index=self._clips - 1 if index is None else index, seed=self.seed, length=self._steps,
                    episode_return=self._return, terminated=self._last[0], truncated=self._last[1],
                    info=dict(self.final_info)))
        self.name = None
        self.frames = 0
        self.final_info = {}
        return run

    def drop(self) -> None:
        """Forget the current clip without ending it (its recorder has failed: nothing can be sent)."""
        self.name, self.frames = None, 0

    def note_end(self, *, terminated: bool, truncated: bool, info: Mapping[str, Any] | None = None) -> None:
        """How the clip's episode(s) ended, for wrappers whose telemetry rows do not say it."""
        self._last = (bool(terminated), bool(truncated))
        self.final_info = dict(info or {})

    def change_keep(self, rule: Any) -> None:
        """Another keep rule from the next clip on (None: keep every clip); candidates the old rule still
        holds are decided by it first. Raises RecorderError when the recorder has failed."""
        old, self.candidates = self.candidates, None
        self.keep = rule
        base = self.outputs or ev.OutputSpec()
        self.outputs = keep_outputs(base, rule) if rule is not None else msgspec.structs.replace(base, keep=None)
        self.candidates = Candidates(rule, self.recorder) if rule is not None else None
        if old is not None:
            old.close()

    def finish(self) -> None:
        """No more clips: every keep decision still pending is made (before the recorder closes)."""
        self.stop()
        if self.candidates is not None:
            self.candidates.close()

    # --- what a wrapper may say differently --------------------------------------------------------

    bad_frame = "video frames must be HxWx3 uint8 arrays, got shape {shape} dtype {dtype}"
    size_changed = ("frame size changed from {was[0]}x{was[1]} to {width}x{height} during recording {name}: "
                    "videos need frames of a constant size")

    def begin_details(self, width: int, height: int, planes: Sequence[np.ndarray]) -> dict[str, Any]:
        """RunRecorder arguments of a clip beyond its size, known at its first frame."""
        return {"physics_dt": 1.0 / max(1, self.fps)}

    def end_details(self) -> dict[str, Any]:
        """RunRecorder.end_episode arguments beyond the episode's summary: the run's report."""
        return {"report": {**self.report, "video": self.name,
                           **{k: v for k, v in self._meta.items() if k != "wrapper"}}}

    # --- the run on the bus ------------------------------------------------------------------------

    def _begin(self, width: int, height: int, planes: Sequence[np.ndarray]) -> None:
        suffix = self.name[len(self.name_prefix):].lstrip("-") if self.name.startswith(self.name_prefix) \
            else self.name
        run_id = f"{run_prefix(self.name_prefix)}-{self.tag}-{re.sub(r'[^A-Za-z0-9_-]', '-', suffix)}"[:64]
        self.recorder.begin(run_id, width=width, height=height, fps=max(1, int(round(self.fps))), meta=self._meta,
                            on_result=self._on_result, scene=self.scene, outputs=self.outputs,
                            **self.begin_details(width, height, planes))

    # --- results (recorder thread) -----------------------------------------------------------------

    def _on_result(self, run: RecordedRun) -> None:
        name = run.meta.get("name")
        stored = run.status == "completed"
        if run.discarded and (stored or self.tell_unstored):
            if self.log is not None:
                self.log.info("video_discarded", video=name, reason=run.decision.reason)
            return
        if not stored:
            if self.log is not None:
                self.log.warning("video_not_stored", video=name, status=run.status, error=run.error)
            if self.tell_unstored and self.on_video is not None:
                self.on_video(self.info(run))
            return
        for a in run.artifacts:
            if a.path and a.kind in _VIDEO_KINDS + _DEPTH_KINDS and os.path.exists(a.path):
                file = local_name(name, a.format) if a.kind in _VIDEO_KINDS else f"{name}-depth.{a.format}"
                link(a.path, Path(self.video_folder) / file)
        video = video_artifact(run)
        if self.log is not None:
            self.log.info("video_stored", video=name, url=video.url if video else None, frames=run.frames,
                          store_latency_s=round(run.store_latency_s or 0.0, 3))
        if self.on_video is not None:
            self.on_video(self.info(run))

    def info(self, r: RecordedRun, status: str | None = None) -> RecordedVideo:
        return recorded_video(r, self.video_folder, self.fps, status)


def _any(flags: Any) -> bool:
    """A flag, or whether any of a tiled clip's flags is set."""
    return flags if type(flags) is bool else bool(np.any(flags))


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
