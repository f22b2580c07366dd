"""The clips of one Gymnasium env (simreel.gym.RecordVideo): a ClipStream that knows the env, so each
run carries the env's physics step, its GL renderer and its depth stream, and each report says what
Gymnasium would have called the video and why it was recorded."""
from __future__ import annotations

import os
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import logger as gym_logger

from simreel.gym.clips import ClipStream
from simreel.gym.depth import first_frame_perception


def env_id(env: gym.Env) -> str:
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


class EnvClips(ClipStream):
    """`streams`: the env's streams (depth planes come with each frame); `video_length`: Gymnasium's
    (0: whole episodes), for the report."""

    bad_frame = "RecordVideo needs HxWx3 uint8 frames from env.render(), got shape {shape} dtype {dtype}"
    size_changed = ("frame size changed from {was[0]}x{was[1]} to {width}x{height} during recording {name}: "
                    "RecordVideo needs frames of a constant size")

    def __init__(self, env: gym.Env, *, streams: Sequence[str], video_length: int, **kwargs: Any) -> None:
        super().__init__(scene=f"gymnasium:{env_id(env)}", tell_unstored=False, **kwargs)
        self.env = env
        self.streams = tuple(streams)
        self.video_length = video_length
        self.trigger = "manual"
        self.env_episodes: list[int] = []  # the env episodes the clip spans (video_length clips cross resets)
        self._gl: dict[str, str] | None = None

    def start(self, name: str, *, trigger: str = "manual", episode: int, step: int | None = None,
              seed: int | None = None) -> None:
        """`trigger`: "episode", "step" or "manual" (start_recording called by the user); only episode
        clips are keep candidates."""
        super().start(name, seed=seed, candidate=trigger == "episode", episode=episode, step=step)
        self.trigger = trigger
        self.env_episodes = [episode]

    def reached(self, episode: int) -> None:
        """The env was reset into `episode` while this clip records."""
        if episode not in self.env_episodes:
            self.env_episodes.append(episode)

    def begin_details(self, width: int, height: int, planes: Sequence[np.ndarray]) -> dict[str, Any]:
        fps = self.fps
        if round(fps) != fps:
            gym_logger.warn(f"render fps {fps} is not a whole number; the video plays at {round(fps)} fps")
        dt = getattr(self.env.unwrapped, "dt", None)
        gl = self._gl_info()
        details = {"physics_dt": float(dt) if isinstance(dt, (int, float)) else 1.0 / fps,
                   "gl_backend": gl.get("backend", ""), "gl_renderer": gl.get("renderer", "")}
        if len(self.streams) > 1:
            details.update(streams=self.streams, perception=first_frame_perception(self.env, self.streams, planes[0]))
        return details

    def end_details(self) -> dict[str, Any]:
        dt = getattr(self.env.unwrapped, "dt", None)
        meta = self.meta
        return {"sim_time_s": self.steps * float(dt) if isinstance(dt, (int, float)) and dt > 0 else None,
                "extra": {"env_episodes": self.env_episodes},
                "report": {"gymnasium": {
                    "env_id": env_id(self.env), "video": self.name, "trigger": self.trigger,
                    "episode_id": meta["episode"], "step_id": meta["step"], "video_length": self.video_length,
                    "name_prefix": self.name_prefix, "render_fps": self.fps, "env_episodes": self.env_episodes}}}

    def _gl_info(self) -> dict[str, str]:
        """GL backend/renderer of a MuJoCo env, read in this thread right after it rendered (the GL
        context is current here); other envs have none."""
        if self._gl is None:
            self._gl = {}
            if getattr(self.env.unwrapped, "mujoco_renderer", None) is not None:
                try:
                    from simreel.sim.gl import gl_info

                    info = gl_info()
                    self._gl = {"backend": info.get("backend", ""), "renderer": info.get("renderer", "")}
                except Exception:  # noqa: BLE001 - informative only
                    self._gl = {"backend": os.environ.get("MUJOCO_GL", ""), "renderer": ""}
        return self._gl
