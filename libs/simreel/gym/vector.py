"""`simreel.gym.vector.RecordVideo`: a drop-in for `gymnasium.wrappers.vector.RecordVideo` (Gymnasium
≥ 1.2.1) that streams frames to the simreel bus instead of keeping every tiled frame in RAM.

Same constructor, triggers, grid (`video_aspect_ratio`, `record_first_only`) and file names; the
videos are made of the same frames, plus one Gymnasium drops: with same-step autoreset the final
frame of each episode is kept (the sub-envs are reset inside `step()`, so the frame is taken before:
SyncVectorEnv sub-envs are wrapped in `KeepFinalFrame` automatically; for AsyncVectorEnv pass
`wrappers=[KeepFinalFrame]` to `gym.make_vec`, otherwise the wrapper warns like Gymnasium).

Beyond Gymnasium's:

- `per_env=True`: one video per sub-env episode, `{name_prefix}-env-{i}-episode-{k}.mp4`, each with its
  own telemetry (reward, action, terminated, truncated per frame); triggers see the sub-env's own
  episode index `k` (episode triggers) or the vector step (step triggers).
- `envs=[...]`: record only these sub-envs (grid or per-env). `record_first_only=True` is `envs=[0]`.

Example::

    envs = gym.make_vec("HalfCheetah-v5", num_envs=8, vectorization_mode="sync", render_mode="rgb_array")
    envs = RecordVideo(envs, "videos", per_env=True, envs=[0, 3], episode_trigger=lambda k: k % 5 == 0)
    ...                                   # the training loop, unchanged
    envs.close()                          # returns once the last video is stored
"""
from __future__ import annotations

import gc
import uuid
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import logger as gym_logger
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from simreel.contract import events as ev
from simreel.gym.arguments import check_render_mode, drop_in_logger, prepare_video_folder
from simreel.gym.clips import ClipStream, VideoCallback
from simreel.gym.keeping import keep_outputs
from simreel.gym.schedules import default_triggers
from simreel.gym.stored import report_unstored
from simreel.gym.video_info import RecordedVideo
from simreel.recorder import DEFAULT_QUEUE_BYTES
from simreel.recorder.folder import recorder_for_folder

__all__ = ["RecordVideo", "KeepFinalFrame", "FINAL_FRAME_KEY"]

FINAL_FRAME_KEY = "simreel_final_frame"


class KeepFinalFrame(gym.Wrapper):
    """Puts the rendered last frame of an episode into the step's info (`simreel_final_frame`), so a
    vector env that resets sub-envs inside `step()` (same-step autoreset) still hands it over, in
    `info["final_info"]`. Renders only on the episode's last step."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info = {**info, FINAL_FRAME_KEY: self.env.render()}
        return obs, reward, terminated, truncated, info


def grid_shape(n: int, h: int, w: int, aspect: tuple[int, int]) -> tuple[int, int]:
    """Gymnasium's rule: among exact factorings of n, the (rows, cols) closest to the aspect ratio."""
    target = aspect[0] / aspect[1]
    best, diff = (1, n), np.inf
    for rows in range(1, int(n ** 0.5) + 1):
        if n % rows == 0:
            cols = n // rows
            d = abs((cols * w) / (rows * h) - target)
            if d < diff:
                best, diff = (rows, cols), d
    return best


class _Grid:
    """Tiles frames into one preallocated image (reused: the recorder copies what it sends)."""

    def __init__(self, n: int, h: int, w: int, c: int, aspect: tuple[int, int]) -> None:
        self.rows, self.cols = grid_shape(n, h, w, aspect)
        self.h, self.w = h, w
        self.image = np.zeros((self.rows * h, self.cols * w, c), np.uint8)

    def tile(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        for idx, f in enumerate(frames):
            r, c = divmod(idx, self.cols)
            self.image[r * self.h:(r + 1) * self.h, c * self.w:(c + 1) * self.w] = f
        return self.image


class RecordVideo(VectorWrapper, gym.utils.RecordConstructorArgs):
    """Records videos of a vector env through simreel (see the module docstring).

    Parameters are those of `gymnasium.wrappers.vector.RecordVideo`; added, keyword-only: `per_env`,
    `envs`, and those of `simreel.gym.RecordVideo` (`nats_url`, `session`, `outputs`, `timeout`,
    `max_queue_bytes`, `strict`, `on_video`).
    """

    def __init__(
        self,
        env: VectorEnv,
        video_folder: str,
        video_aspect_ratio: tuple[int, int] = (1, 1),
        record_first_only: bool = False,
        episode_trigger: Callable[[int], bool] | None = None,
        step_trigger: Callable[[int], bool] | None = None,
        video_length: int = 0,
        name_prefix: str = "rl-video",
        fps: int | None = None,
        disable_logger: bool = True,
        gc_trigger: Callable[[int], bool] | None = lambda episode: True,
        *,
        per_env: bool = False,
        envs: Sequence[int] | None = None,
        nats_url: str | None = None,
        session: str = "default",
        outputs: ev.OutputSpec | None = None,
        timeout: float = 300.0,
        max_queue_bytes: int = DEFAULT_QUEUE_BYTES,
        strict: bool = True,
        on_video: VideoCallback | None = None,
        keep: Any = None,
    ) -> None:
        VectorWrapper.__init__(self, env)
        gym.utils.RecordConstructorArgs.__init__(
            self, video_folder=video_folder, episode_trigger=episode_trigger, step_trigger=step_trigger,
            video_length=video_length, name_prefix=name_prefix, disable_logger=disable_logger)
        self._check_arguments(env, keep, per_env, step_trigger, video_length)
        if keep is not None:
            outputs = keep_outputs(outputs, keep)
        self.episode_trigger, self.step_trigger = default_triggers(episode_trigger, step_trigger, keep)
        self.envs_recorded = self._chosen_envs(record_first_only, envs)
        self.per_env = per_env
        self.record_first_only = record_first_only
        self.video_aspect_ratio = video_aspect_ratio
        self._autoreset()
        self.disable_logger, self.gc_trigger = disable_logger, gc_trigger
        self.video_folder = prepare_video_folder(video_folder)
        self.frames_per_sec = self.metadata.get("render_fps", 30) if fps is None else fps
        self.name_prefix = name_prefix
        self.video_length = video_length if video_length != 0 else float("inf")
        self.step_id = -1
        self.episode_id = -1  # sub-env 0's episodes, as Gymnasium counts them (grid mode)
        self.videos: list[RecordedVideo] = []
        self.discarded: list[RecordedVideo] = []  # with keep=: the episodes the rule did not keep
        self.timeout, self.strict = float(timeout), strict
        self._log = drop_in_logger(__name__, disable_logger)
        self._tag = uuid.uuid4().hex[:8]
        self._closed = False
        self._grid: _Grid | None = None
        self._warned_final = False
        self._streams = self._clip_streams(nats_url=nats_url, session=session, outputs=outputs, keep=keep,
                                           max_queue_bytes=max_queue_bytes, on_video=on_video)
        self._episode = {i: -1 for i in self._streams}  # per-env episode index (per_env), or sub-env 0's (grid)
        self._pending_reset = np.zeros(self.num_envs, bool)  # next-step mode: done last step, reset this step

    @staticmethod
    def _check_arguments(env: VectorEnv, keep: Any, per_env: bool, step_trigger: Any, video_length: int) -> None:
        check_render_mode(env.render_mode)
        if keep is not None and (not per_env or step_trigger is not None or video_length):
            raise ValueError("keep= decides on whole episodes of one sub-env: it needs per_env=True and no "
                             "step_trigger or video_length")

    def _chosen_envs(self, record_first_only: bool, envs: Sequence[int] | None) -> list[int]:
        """The sub-envs recorded: `envs`, sub-env 0 alone (`record_first_only`), else all of them."""
        chosen = [0] if record_first_only else list(range(self.num_envs)) if envs is None else list(envs)
        if not chosen or any(not 0 <= i < self.num_envs for i in chosen) or len(set(chosen)) != len(chosen):
            raise ValueError(f"envs must be distinct sub-env indices in 0..{self.num_envs - 1}, got {envs}")
        return chosen

    def _autoreset(self) -> None:
        """The vector env's autoreset mode (Gymnasium's default when it does not say); with same-step
        autoreset, SyncVectorEnv sub-envs keep each episode's final frame."""
        mode = self.env.metadata.get("autoreset_mode", None)
        if mode is None:
            gym_logger.warn(f"{self.env} metadata doesn't specify its autoreset mode ({self.env.metadata!r}), "
                            "therefore, defaulting to next step.")
            mode = AutoresetMode.NEXT_STEP
        self.autoreset_mode = AutoresetMode(mode)
        self._final_frames_wrapped = False
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            self._final_frames_wrapped = self._keep_final_frames()

    def _clip_streams(self, *, nats_url: str | None, session: str, outputs: ev.OutputSpec | None, keep: Any,
                      max_queue_bytes: int, on_video: VideoCallback | None) -> dict[int | None, ClipStream]:
        """One stream of clips per sub-env (per_env) or one for the grid, each on its own recorder:
        sub-env videos overlap in time, and a recorder records one run at a time."""
        env = self.env
        scene = f"gymnasium:{env.spec.id}" if getattr(env, "spec", None) is not None else "gymnasium:vector"
        report = {"gymnasium_vector": {"num_envs": self.num_envs, "envs": self.envs_recorded, "per_env": self.per_env,
                                       "autoreset_mode": self.autoreset_mode.value, "name_prefix": self.name_prefix}}
        streams: dict[int | None, ClipStream] = {}
        for i in self.envs_recorded if self.per_env else [None]:
            suffix = "" if i is None else f"-{i}"
            rec = recorder_for_folder(self.video_folder, nats_url=nats_url, session=session, outputs=outputs,
                                      max_queue_bytes=max_queue_bytes, logger=self._log,
                                      name=f"simreel-recorder-{self._tag}{suffix}")
            rec.start()  # joins the process's stack in the background now
            streams[i] = ClipStream(rec, video_folder=self.video_folder, tag=f"{self._tag}{suffix}",
                                    name_prefix=self.name_prefix, fps=self.frames_per_sec, scene=scene,
                                    on_video=on_video, logger=self._log, report=report, keep=keep,
                                    outputs=outputs if keep is not None else None)
        return streams

    # --- gymnasium's API ---------------------------------------------------------------------------

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        mask = options.get("reset_mask") if options else None
        mask = np.ones(self.num_envs, bool) if mask is None else np.asarray(mask, bool)
        if self.per_env:
            for i in self.envs_recorded:
                if mask[i]:
                    self._begin_episode(i)
        elif mask[0]:
            self._begin_episode(None)
        obs, info = self.env.reset(seed=seed, options=options)
        self._pending_reset[mask] = False
        self._capture(None, mask)
        return obs, info

    def step(self, actions):
        obs, rewards, terminations, truncations, info = self.env.step(actions)
        self.step_id += 1
        done = np.logical_or(terminations, truncations)
        started = np.zeros(self.num_envs, bool)  # sub-envs whose frame this step is a new episode's first
        if done.any():
            self._note_final_info(info, done)

        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            started = self._pending_reset.copy()
            self._pending_reset = done.copy()
        elif self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
            self._final_frames(info, done, actions, rewards, terminations, truncations)
            started = done

        for key in self._streams:
            i = 0 if key is None else key
            if started[i]:
                self._begin_episode(key)
        if self.step_trigger and self.step_trigger(self.step_id):
            for key, s in self._streams.items():
                s.start(self._name(key, "step", self.step_id), step=self.step_id, env=key)

        stepped = (actions, rewards, terminations, truncations)
        self._capture(stepped, started)
        return obs, rewards, terminations, truncations, info

    def close(self, **kwargs: Any) -> None:
        """Close the env, end the recordings and return once every video is stored (up to `timeout`)."""
        if self._closed:
            return
        self._closed = True
        super().close(**kwargs)
        for s in self._streams.values():
            s.finish()
        runs_info = []
        for s in self._streams.values():
            runs = s.recorder.close(self.timeout)
            runs_info += [(s, r) for r in runs if r.ended_at is not None]
        self.videos = [s.info(r) for s, r in runs_info if not r.discarded]
        self.discarded = [s.info(r) for s, r in runs_info if r.discarded]
        runs = [r for _, r in runs_info]
        report_unstored([r for r in runs if not r.discarded and r.status != "completed"], len(self.videos),
                        strict=self.strict, runs=[r for r in runs if r.status != "completed"])

    # --- recording ---------------------------------------------------------------------------------

    def _name(self, key: int | None, kind: str, n: int) -> str:
        env = "" if key is None else f"-env-{key}"
        return f"{self.name_prefix}{env}-{kind}-{n}"

    def _begin_episode(self, key: int | None) -> None:
        """A new episode of the stream's sub-env starts: Gymnasium's reset rule, per stream."""
        self._episode[key] += 1
        k = self._episode[key]
        if key is None:
            self.episode_id = k
        s = self._streams[key]
        if s.recording and self.video_length == float("inf"):
            s.stop()
            if self.gc_trigger and self.gc_trigger(k):
                gc.collect()
        if self.episode_trigger and self.episode_trigger(k):
            s.start(self._name(key, "episode", k), episode=k, env=key)

    def _render(self, which: Sequence[int]) -> dict[int, np.ndarray]:
        """Frames of the sub-envs in `which`: only those are rendered where the vector env allows it."""
        subs = getattr(self.env.unwrapped, "envs", None)
        if subs is not None and len(which) < self.num_envs:
            return {i: subs[i].render() for i in which}
        frames = self.env.render()
        return {i: frames[i] for i in which}

    def _capture(self, stepped: tuple | None, started: np.ndarray) -> None:
        active = [(k, s) for k, s in self._streams.items() if s.recording]
        if not active:
            return
        which = sorted({0 if k is None else k for k, _ in active}) if self.per_env else self.envs_recorded
        frames = self._render(which)
        for key, s in active:
            if key is None:
                frame = self._tile([frames[i] for i in self.envs_recorded])
                row = self._row(stepped, started, self.envs_recorded)
            else:
                frame, row = frames[key], self._row(stepped, started, key)
            s.add(frame, row)
            if s.frames > self.video_length:
                s.stop()

    def _tile(self, frames: list[np.ndarray]) -> np.ndarray:
        if len(frames) == 1:
            return frames[0]
        if self._grid is None:
            h, w, c = frames[0].shape
            self._grid = _Grid(len(frames), h, w, c, self.video_aspect_ratio)
        return self._grid.tile(frames)

    @staticmethod
    def _row(stepped: tuple | None, started: np.ndarray, which: int | list[int]) -> dict[str, Any]:
        """Telemetry of one frame: one sub-env's values, or lists over the grid's sub-envs."""
        if stepped is None:
            return {"step": 0, "reset": True, "reward": None, "action": None, "terminated": False,
                    "truncated": False}
        actions, rewards, term, trunc = stepped
        if isinstance(which, int):
            if started[which]:  # next-step autoreset: this step only reset the sub-env
                return {"reset": True, "reward": None, "action": None, "terminated": False, "truncated": False}
            return {"reward": rewards[which], "action": actions[which], "terminated": bool(term[which]),
                    "truncated": bool(trunc[which])}
        return {"reward": [rewards[i] for i in which], "action": [actions[i] for i in which],
                "terminated": [bool(term[i]) for i in which], "truncated": [bool(trunc[i]) for i in which]}

    def _note_final_info(self, info: dict, done: np.ndarray) -> None:
        """The ending sub-envs' own last info, for keep= callables (Gymnasium's vector info holds an
        array per key, with `_key` saying which sub-envs have it)."""
        if not self.per_env or not isinstance(info, dict):
            return
        final = info.get("final_info", info) if self.autoreset_mode == AutoresetMode.SAME_STEP else info
        for key, s in self._streams.items():
            if key is not None and done[key] and s.recording:
                s.final_info = {k: v[key] for k, v in final.items() if not k.startswith("_")
                                and isinstance(v, np.ndarray) and final.get(f"_{k}", np.ones(len(done), bool))[key]
                                and k != FINAL_FRAME_KEY}

    # --- same-step autoreset: the final frame comes from the info -----------------------------------

    def _keep_final_frames(self) -> bool:
        """Wrap SyncVectorEnv sub-envs in KeepFinalFrame; report whether every sub-env has it."""
        subs = getattr(self.env.unwrapped, "envs", None)
        if subs is not None:
            for i, sub in enumerate(subs):
                if not _has(sub, KeepFinalFrame):
                    subs[i] = KeepFinalFrame(sub)
            return True
        return False

    def _final_frames(self, info: dict, done: np.ndarray, actions, rewards, term, trunc) -> None:
        final = info.get("final_info", {}) if isinstance(info, dict) else {}
        frames, have = final.get(FINAL_FRAME_KEY), final.get(f"_{FINAL_FRAME_KEY}")
        for key, s in self._streams.items():
            i = 0 if key is None else key
            if not (done[i] and s.recording):
                continue
            if frames is None or have is None or not have[i]:
                if not self._warned_final:
                    self._warned_final = True
                    gym_logger.warn("Same-step autoreset: the final frame of each episode is not in the info. "
                                    "Make the vector env with wrappers=[simreel.gym.vector.KeepFinalFrame] to keep it.")
                continue
            stepped = (actions, rewards, term, trunc)
            if key is None:  # the grid's final frame: sub-env 0's last frame, the others as they are now
                current = self._render(self.envs_recorded)
                tiles = [frames[j] if (have[j] and done[j]) else current[j] for j in self.envs_recorded]
                s.add(self._tile(tiles), self._row(stepped, np.zeros_like(done), self.envs_recorded))
            else:
                s.add(frames[i], self._row(stepped, np.zeros_like(done), key))
            if s.frames > self.video_length:
                s.stop()


def _has(env: gym.Env, cls: type) -> bool:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, cls):
            return True
        env = env.env
    return False
