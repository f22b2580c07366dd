"""`simreel.sb3.VecVideoRecorder`: a drop-in for Stable-Baselines3's `VecVideoRecorder` that streams the
tiled `render()` image to the simreel bus instead of buffering every frame and writing with moviepy.

Same constructor (`video_folder`, `record_video_trigger`, `video_length`, `name_prefix`), same file
names (`{name_prefix}-step-{a}-to-step-{b}.mp4`), same frames (`video_length + 1` per clip, the
first taken at the triggering step). `pip install simreel[sb3]`.

Example::

    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from simreel.sb3 import VecVideoRecorder

    venv = make_vec_env("HalfCheetah-v5", n_envs=4, env_kwargs={"render_mode": "rgb_array"})
    venv = VecVideoRecorder(venv, "videos", record_video_trigger=lambda s: s % 10_000 == 0, video_length=200)
    PPO("MlpPolicy", venv).learn(50_000)
    venv.close()                     # returns once the last clip is stored
"""
from __future__ import annotations

import os
import uuid
from typing import Any, Callable

import numpy as np

try:
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvObs, VecEnvStepReturn, VecEnvWrapper
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError("simreel.sb3 needs Stable-Baselines3: pip install 'simreel[sb3]'") from e

from gymnasium import logger as gym_logger

from simreel.contract import events as ev
from simreel.gym.arguments import drop_in_logger
from simreel.gym.clips import ClipStream, VideoCallback
from simreel.gym.keeping import keep_outputs
from simreel.gym.stored import report_unstored
from simreel.gym.video_info import RecordedVideo
from simreel.recorder import DEFAULT_QUEUE_BYTES
from simreel.recorder.folder import recorder_for_folder

__all__ = ["VecVideoRecorder"]


class VecVideoRecorder(VecEnvWrapper):
    """SB3's VecVideoRecorder, streamed. Added, keyword-only: `nats_url`, `session`, `outputs`,
    `timeout`, `max_queue_bytes`, `strict`, `on_video` (as `simreel.gym.RecordVideo`), and `keep`:
    a `simreel.contract.keep` rule or callable deciding per clip when it ends. A clip's `Outcome`: `index` the
    clip's number, `length` its steps, `episode_return` the sum over its steps of the mean reward across
    sub-envs, `terminated` / `truncated` whether any sub-env's episode ended in it by termination / by
    its time limit (`TimeLimit.truncated`), `info` `{"infos": the last step's infos}`."""

    def __init__(
        self,
        venv: VecEnv,
        video_folder: str,
        record_video_trigger: Callable[[int], bool],
        video_length: int = 200,
        name_prefix: str = "rl-video",
        *,
        nats_url: str | None = None,
        session: str = "default",
        outputs: ev.OutputSpec | None = None,
        timeout: float = 300.0,
        max_queue_bytes: int = DEFAULT_QUEUE_BYTES,
        strict: bool = True,
        on_video: VideoCallback | None = None,
        disable_logger: bool = True,
        keep: Any = None,
    ) -> None:
        VecEnvWrapper.__init__(self, venv)
        self.env = venv
        inner = self._innermost(venv)
        assert self.env.render_mode == "rgb_array", f"The render_mode must be 'rgb_array', not {self.env.render_mode}"
        self.frames_per_sec = self.env.metadata.get("render_fps", 30)
        self.record_video_trigger = record_video_trigger
        self.video_folder = os.path.abspath(video_folder)
        os.makedirs(self.video_folder, exist_ok=True)
        self.name_prefix = name_prefix
        self.step_id = 0
        self.video_length = video_length
        self.video_name = ""
        self.video_path = ""
        self.videos: list[RecordedVideo] = []
        self.discarded: list[RecordedVideo] = []  # with keep=: the clips the rule did not keep
        self._ended = (False, False)
        self._last_infos: list = []
        self.timeout, self.strict = float(timeout), strict
        self._closed = False
        self._clips = self._clip_stream(inner, nats_url=nats_url, session=session, outputs=outputs, keep=keep,
                                        max_queue_bytes=max_queue_bytes, on_video=on_video,
                                        disable_logger=disable_logger)

    def _innermost(self, venv: VecEnv) -> VecEnv:
        """The VecEnv under every wrapper; its sub-envs' metadata becomes this wrapper's (as SB3 does)."""
        inner = venv
        while isinstance(inner, VecEnvWrapper):
            inner = inner.venv
        self.env.metadata = inner.get_attr("metadata")[0] if hasattr(inner, "get_attr") else inner.metadata
        return inner

    def _clip_stream(self, inner: VecEnv, *, nats_url: str | None, session: str, outputs: ev.OutputSpec | None,
                     keep: Any, max_queue_bytes: int, on_video: VideoCallback | None,
                     disable_logger: bool) -> ClipStream:
        """The clips, on a recorder of their own that joins the process's stack in the background now."""
        if keep is not None:
            outputs = keep_outputs(outputs, keep)
        log = drop_in_logger(__name__, disable_logger)
        tag = uuid.uuid4().hex[:8]
        recorder = recorder_for_folder(self.video_folder, nats_url=nats_url, session=session, outputs=outputs,
                                       max_queue_bytes=max_queue_bytes, logger=log, name=f"simreel-recorder-{tag}")
        recorder.start()
        env_id = getattr(getattr(inner, "envs", [None])[0], "spec", None) if hasattr(inner, "envs") else None
        return ClipStream(recorder, video_folder=self.video_folder, tag=tag, name_prefix=self.name_prefix,
                          fps=self.frames_per_sec, scene=f"gymnasium:{env_id.id}" if env_id else "sb3:vec_env",
                          on_video=on_video, logger=log, keep=keep, outputs=outputs if keep is not None else None,
                          report={"sb3": {"num_envs": self.env.num_envs, "video_length": self.video_length,
                                          "name_prefix": self.name_prefix}})

    @property
    def recording(self) -> bool:
        return self._clips.recording

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        if self._video_enabled():
            self._start_video_recorder()
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        self.step_id += 1
        if self.recording:
            self._note(dones, infos)
            self._capture_frame({"reward": rewards, "done": dones})
            if self._clips.frames > self.video_length:
                self._stop_recording()
        elif self._video_enabled():
            self._start_video_recorder()
        return obs, rewards, dones, infos

    def close(self) -> None:
        """Close the env, end the clip and return once every clip is stored (up to `timeout`)."""
        if self._closed:
            return
        self._closed = True
        VecEnvWrapper.close(self)
        if self.recording:
            self._stop_recording()
        self._clips.finish()
        runs = [r for r in self._clips.recorder.close(self.timeout) if r.ended_at is not None]
        self.videos = [self._clips.info(r) for r in runs if not r.discarded]
        self.discarded = [self._clips.info(r) for r in runs if r.discarded]
        report_unstored([r for r in runs if r.status != "completed"], len(runs), strict=self.strict)

    # --- SB3's own steps ---------------------------------------------------------------------------

    def _video_enabled(self) -> bool:
        return self.record_video_trigger(self.step_id)

    def _start_video_recorder(self) -> None:
        name = f"{self.name_prefix}-step-{self.step_id}-to-step-{self.step_id + self.video_length}"
        self.video_name = f"{name}.mp4"
        self.video_path = os.path.join(self.video_folder, self.video_name)
        self._clips.start(name, step=self.step_id)
        self._ended, self._last_infos = (False, False), []
        self._capture_frame(None)

    def _capture_frame(self, stepped: dict[str, Any] | None) -> None:
        frame = self.env.render()
        if not isinstance(frame, np.ndarray):
            self._stop_recording()
            gym_logger.warn("Recording stopped: expected type of frame returned by render to be a numpy array, "
                            f"got instead {type(frame)}.")
            return
        row = {"step_id": self.step_id, "reward": None, "done": None} if stepped is None else {
            "step_id": self.step_id, "reward": stepped["reward"], "done": stepped["done"]}
        self._clips.add(frame, row)

    def _note(self, dones: np.ndarray, infos: list) -> None:
        """How the clip's sub-env episodes ended so far (SB3 marks time limits in the info)."""
        term, trunc = self._ended
        for done, info in zip(dones, infos):
            if done:
                cut = bool(info.get("TimeLimit.truncated", False))
                term, trunc = term or not cut, trunc or cut
        self._ended, self._last_infos = (term, trunc), list(infos)

    def _stop_recording(self) -> None:
        if self.recording:
            self._clips.note_end(terminated=self._ended[0], truncated=self._ended[1],
                                 info={"infos": self._last_infos})
        self._clips.stop()
