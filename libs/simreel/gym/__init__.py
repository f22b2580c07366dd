"""`simreel.gym.RecordVideo`: a drop-in for `gymnasium.wrappers.RecordVideo` that streams frames to
the simreel bus instead of keeping them in RAM and encoding them in the env's thread.

Same constructor, same triggers, same file names: the episodes and steps that gymnasium would record
are recorded, and `video_folder/{name_prefix}-episode-{n}.mp4` (or `-step-{n}`) appear when they are
stored. What changes is behaviour: `step()` copies the rendered frame into a bounded queue and
returns; a background thread publishes it (simreel.recorder.RecorderThread); an encoder process turns
it into MP4 while the episode is still running; each video also gets a telemetry.jsonl (reward,
action, terminated, truncated, step per frame) and a report, with URLs in `wrapper.videos`.

Example::

    import gymnasium as gym
    from simreel.gym import RecordVideo

    env = RecordVideo(gym.make("HalfCheetah-v5", render_mode="rgb_array"), "videos",
                      episode_trigger=lambda e: e % 10 == 0)
    for _ in range(30):
        obs, info = env.reset(seed=0)
        done = False
        while not done:
            obs, r, terminated, truncated, info = env.step(env.action_space.sample())
            done = terminated or truncated
    env.close()                       # waits until every video is stored
    for v in env.videos:
        print(v["path"], v["url"], v["telemetry_url"])

With `SIMREEL_NATS_URL` unset (or `nats_url=None`), an embedded stack (nats-server, encoder, uploader,
retention as child processes) is started on the first recording, stores into `video_folder/.simreel`,
and is stopped by `close()`. With a bus configured, the running simreel services do the work and
the videos are stored wherever that stack stores them (local paths are linked only when visible here).
"""
from __future__ import annotations

import collections
import contextlib
import gc
import os
import re
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence, SupportsFloat

import gymnasium as gym
import msgspec
import numpy as np
from gymnasium import logger as gym_logger

from simreel.runtime import config
from simreel.contract import events as ev
from simreel.runtime import log as logs
from simreel.contract import streams as stream_planes
from simreel.contract import subjects
from simreel.capture import CaptureState, describe_trigger
from simreel.contract.keep import Outcome, wire_rule
from simreel.contract.keep import describe as describe_keep
from simreel.runtime.config import NatsSettings
from simreel.gym.files import jsonable as _jsonable
from simreel.gym.files import link as _link
from simreel.gym.files import local_name as _local_name
from simreel.gym.files import run_prefix as _run_prefix
from simreel.gym.clips import recorded_video, video_artifact
from simreel.gym.video_info import RecordedVideo
from simreel.recorder import DEFAULT_QUEUE_BYTES, RecordedRun, RecorderError, RecorderThread
from simreel.gym.keeping import Candidates

__all__ = ["RecordVideo", "RecordedVideo", "RecordingError", "capped_cubic_video_schedule", "every_episode"]

EMBEDDED_DIR = ".simreel"


class RecordingError(RuntimeError):
    """Some videos could not be recorded or stored; `runs` says which and why."""

    def __init__(self, message: str, runs: list[RecordedRun]) -> None:
        super().__init__(message)
        self.runs = runs


def _check_streams(env: gym.Env, wanted: Sequence[str]) -> tuple[str, ...]:
    """The streams this wrapper can record from `env`, or ValueError with the reason."""
    wanted = tuple(wanted)
    if problem := stream_planes.check_streams(wanted):
        raise ValueError(f"streams {wanted}: {problem}")
    if "segmentation" in wanted:
        raise ValueError("streams: 'segmentation' cannot be recorded from a Gymnasium env: its MuJoCo renderer "
                         "offers rgb_array and depth_array only (simreel run / SimRequested records segmentation "
                         "of MuJoCo scenes)")
    if "depth" in wanted and getattr(env.unwrapped, "mujoco_renderer", None) is None:
        raise ValueError(f"streams: 'depth' needs a Gymnasium MuJoCo env, whose renderer offers depth_array; "
                         f"{type(env.unwrapped).__name__} renders RGB frames only")
    if "depth" in wanted and env.render_mode != "rgb_array":
        raise ValueError(f"streams: 'depth' is read right after each frame is rendered, which needs "
                         f"render_mode='rgb_array' (the env has {env.render_mode!r})")
    return wanted


def capped_cubic_video_schedule(episode_id: int) -> bool:
    """Gymnasium's default episode trigger, copied because `gymnasium.utils.save_video` cannot be
    imported without moviepy: episodes 0, 1, 8, 27, …, 729, then every 1000th."""
    if episode_id < 1000:
        return int(round(episode_id ** (1.0 / 3))) ** 3 == episode_id
    return episode_id % 1000 == 0


capped_cubic_video_schedule.description = "episodes 0, 1, 8, 27, …, 729, then every 1000th"  # type: ignore[attr-defined]


def every_episode(episode_id: int) -> bool:
    """The trigger of a recorder with `keep=` and no trigger: every episode is a candidate."""
    return True


every_episode.description = "every episode"  # type: ignore[attr-defined]


def keep_outputs(outputs: ev.OutputSpec | None, keep: Any) -> ev.OutputSpec:
    """The recorder's OutputSpec with its keep rule announced (for a callable: a "producer" rule), so
    the encoder holds each candidate's videos until the recorder's decision."""
    spec = msgspec.structs.replace(outputs or ev.OutputSpec(), keep=wire_rule(keep))
    return msgspec.convert(msgspec.to_builtins(spec), ev.OutputSpec)  # the limits, and per-episode layout


def _quiet_logger():
    """Warnings and errors only: `disable_logger=True` promises a silent training loop."""
    return logs.quiet("simreel.gym")


class RecordVideo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Records videos of episodes (or step-triggered clips) through simreel.

    Parameters are those of `gymnasium.wrappers.RecordVideo` (gymnasium 1.4), with the same meaning
    and defaults; `disable_logger` silences simreel's info lines instead of moviepy's bar. Added,
    keyword-only:

    - `nats_url`: a simreel bus; default `SIMREEL_NATS_URL`, and when neither is set, the embedded stack.
    - `session`: retention group of the videos (part of their keys).
    - `outputs`: `simreel.contract.events.OutputSpec` (formats, crf, preset, telemetry); default MP4 + telemetry.
    - `timeout`: how long `close()` waits for the last videos to be stored (seconds).
    - `max_queue_bytes`: frames waiting for the publisher thread (default 4 MiB, ~4 frames of 640×480);
      `step()` blocks beyond it, which happens only while NATS starts or the bus is slow.
    - `strict`: `close()` raises RecordingError if a video failed or timed out (else it only warns).
    - `recorder`: a `simreel.recorder.RecorderThread` shared by several wrappers (one connection, one
      embedded stack); the caller closes it. Default: one of its own, closed by `close()`.
    - `streams`: `("rgb", "depth")` also records the depth of every recorded frame, for Gymnasium's
      MuJoCo envs (their renderer's `depth_array`): `{name}-depth.mkv` (lossless, 1 mm per step,
      docs/events.md) and a colour preview `{name}-depth.mp4` beside the video. Other envs, and
      segmentation (Gymnasium's renderer does not offer it), are refused here with the reason.
    - `keep`: which recorded episodes keep their video, decided when each ends: a rule of
      `simreel.contract.keep` (`keep.failures() | keep.worst(5)`) or a callable(`simreel.contract.keep.Outcome`) -> bool
      (index, seed, length, episode_return, terminated, truncated, info). `episode_trigger` still
      picks the candidates; with `keep` and no trigger every episode is one. A discarded episode
      leaves no video (its telemetry and report are stored) and is listed in `discarded`.

    After `close()` (or `wait()`), `videos` lists one `RecordedVideo` per video: `name`, `path` (the
    file in video_folder, or None when the store is not local), `url`, `run_id`, `episode`, `step`,
    `frames`, `fps`, `telemetry_url`, `report_url`, `status`, `error`, `store_latency_s` (attributes;
    `v["url"]` also works, as with the dicts of earlier versions).
    """

    def __init__(
        self,
        env: gym.Env,
        video_folder: str,
        episode_trigger: Callable[[int], bool] | None = None,
        step_trigger: Callable[[int], bool] | None = None,
        video_length: int = 0,
        name_prefix: str = "rl-video",
        fps: int | None = None,
        disable_logger: bool = True,
        gc_trigger: Callable[[int], bool] | None = lambda episode: True,
        *,
        nats_url: str | None = None,
        session: str = "default",
        outputs: ev.OutputSpec | None = None,
        timeout: float = 300.0,
        max_queue_bytes: int = DEFAULT_QUEUE_BYTES,
        strict: bool = True,
        recorder: RecorderThread | None = None,
        on_video: Callable[[RecordedVideo], None] | None = None,
        announce: bool = True,
        streams: Sequence[str] = ("rgb",),
        keep: Any = None,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, video_folder=video_folder, episode_trigger=episode_trigger, step_trigger=step_trigger,
            video_length=video_length, name_prefix=name_prefix, fps=fps, disable_logger=disable_logger,
            gc_trigger=gc_trigger, nats_url=nats_url, session=session, outputs=outputs, timeout=timeout,
            max_queue_bytes=max_queue_bytes, strict=strict, recorder=recorder, on_video=on_video,
            announce=announce, streams=streams, keep=keep,
        )
        self._streams = _check_streams(env, streams)
        gym.Wrapper.__init__(self, env)

        if env.render_mode in {None, "human", "ansi"}:
            raise ValueError(
                f"Render mode is {env.render_mode}, which is incompatible with RecordVideo. "
                "Initialize your environment with a render_mode that returns an image, such as rgb_array."
            )
        if keep is not None:
            if step_trigger is not None or video_length:
                raise ValueError("keep= decides on whole episodes: it cannot be combined with step_trigger or "
                                 "video_length")
            if episode_trigger is None:
                episode_trigger = every_episode
            outputs = keep_outputs(outputs, keep)
        if episode_trigger is None and step_trigger is None:
            episode_trigger = capped_cubic_video_schedule
        self._trigger_text = describe_trigger(episode_trigger, step_trigger, video_length)

        self.episode_trigger = episode_trigger
        self.step_trigger = step_trigger
        self.disable_logger = disable_logger
        self.gc_trigger = gc_trigger

        self.video_folder = os.path.abspath(video_folder)
        if os.path.isdir(self.video_folder):
            gym_logger.warn(
                f"Overwriting existing videos at {self.video_folder} folder "
                f"(try specifying a different `video_folder` for the `RecordVideo` wrapper if this is not desired)"
            )
        os.makedirs(self.video_folder, exist_ok=True)

        if fps is None:
            fps = self.metadata.get("render_fps", 30)
        self.frames_per_sec: int = fps
        self.name_prefix: str = name_prefix
        self._video_name: str | None = None
        self.video_length: int = video_length if video_length != 0 else float("inf")
        self.recording: bool = False
        self.render_history: list = []

        self.step_id = -1
        self.episode_id = -1

        self.session = session
        self.outputs = outputs or ev.OutputSpec()
        self.timeout = float(timeout)
        self.strict = strict
        self.videos: list[RecordedVideo] = []
        self.discarded: list[RecordedVideo] = []  # with keep=: the episodes the rule did not keep
        self.keep = keep
        self._final_info: dict[str, Any] = {}
        self._log = _quiet_logger() if disable_logger else logs.get(__name__)
        self._nats_url = nats_url or config.nats_url()
        self._max_queue_bytes = int(max_queue_bytes)
        self._run_tag = uuid.uuid4().hex[:8]
        self._recorder: RecorderThread | None = recorder
        self._owns_recorder = recorder is None
        self._closed = False
        self._gl: dict[str, str] | None = None
        # the current recording
        self._recorded_frames = 0
        self._size: tuple[int, int] | None = None
        self._perception: ev.Perception | None = None  # of the current recording (its first frame)
        self._clip: dict[str, Any] = {}
        # the env's current episode, for telemetry
        self._episode_step = 0
        self._reset_seed: int | None = None
        # live capture controls: filled by the recorder thread, read only at episode boundaries
        self.on_video = on_video
        self.recorder_id = f"{_run_prefix(name_prefix)}-{self._run_tag}"
        self.capture = CaptureState()
        self._controls: collections.deque[ev.Event] = collections.deque()
        self._videos_started = 0
        self._announce = announce
        if self._recorder is None:
            self._recorder = self._make_recorder()
        self._candidates = Candidates(keep, self._recorder) if keep is not None else None
        if announce:
            self._recorder.subscribe(subjects.recorder_control(self.recorder_id), self._controls.append)
            self._recorder.subscribe(subjects.recorder_keep(self.recorder_id), self._controls.append)
        # Start-up (the embedded stack, the connection) runs in the background from here on, so it
        # overlaps the caller's set-up instead of sitting in front of the first recorded step.
        self._recorder.start()
        self._announce_state("running")

    # --- gymnasium's API ---------------------------------------------------------------------------

    @property
    def recorded_frame_count(self) -> int:
        """Frames of the current recording so far (gymnasium's `len(recorded_frames)`; none are kept)."""
        return self._recorded_frames

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the environment and eventually start a new recording (gymnasium's rule, unchanged)."""
        obs, info = super().reset(seed=seed, options=options)
        self.episode_id += 1
        self._episode_step = 0
        self._reset_seed = seed

        if self.recording and self.video_length == float("inf"):
            self.stop_recording()

        if self._controls:
            self._apply_controls()
        if self.capture.stopped and self.recording:
            self.stop_recording()
        if self.capture.decide(self.episode_id, self.episode_trigger):
            self.start_recording(f"{self.name_prefix}-episode-{self.episode_id}")
        if self.recording:
            self._capture_frame(None)
            if self._recorded_frames > self.video_length:
                self.stop_recording()
        self._announce_state("running")

        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env; when recording, hand the rendered frame and this step's telemetry to the
        publisher thread and return (no encode, no frame list here)."""
        obs, rew, terminated, truncated, info = self.env.step(action)
        self.step_id += 1
        self._episode_step += 1

        if self.step_trigger and self.step_trigger(self.step_id) and not self.capture.stopped:
            self.start_recording(f"{self.name_prefix}-step-{self.step_id}")
        if self.recording:
            if terminated or truncated:
                self._final_info = info
            self._capture_frame((action, rew, terminated, truncated))

            if self._recorded_frames > self.video_length:
                self.stop_recording()

        return obs, rew, terminated, truncated, info

    def render(self) -> Any:
        """As gymnasium: frames that `rgb_array_list` envs return here are part of the recording too."""
        render_out = super().render()
        if self.recording and isinstance(render_out, list):
            for frame in render_out:
                self._send(frame, {"render_call": True})

        if len(self.render_history) > 0:
            tmp_history = self.render_history
            self.render_history = []
            return tmp_history + render_out
        return render_out

    def close(self) -> None:
        """Close the env, end the current recording, wait (up to `timeout`) until every video is
        stored and linked into video_folder, then stop the embedded stack if one was started."""
        if self._closed:
            return
        self._closed = True
        super().close()
        if self.recording:
            try:
                self.stop_recording()
            except RecorderError as e:  # the recorder already failed; report it with the others below
                self.recording = False
                self._log.warning("last_video_lost", video=self._video_name, error=str(e))
        if self._recorder is None:
            return
        if self._candidates is not None:
            with contextlib.suppress(RecorderError):  # the recorder failed: reported with the runs below
                self._candidates.close()
        self._announce_state("closed")
        # A shared recorder belongs to its creator: wait for our videos, leave it running.
        runs = self._recorder.close(self.timeout) if self._owns_recorder else self._recorder.wait(self.timeout)
        runs = [r for r in runs if r.meta.get("wrapper") == self._run_tag]
        self._collect(runs)
        bad = [r for r in runs if r.status != "completed"]
        if bad:
            where = f"; service logs in {self._recorder.log_dir}" if self._recorder.log_dir else ""
            detail = "; ".join(f"{r.meta.get('name')}: {r.status}: {r.error}" for r in bad)
            message = f"{len(bad)} of {len(runs)} video(s) were not stored: {detail}{where}"
            if self.strict:
                raise RecordingError(message, bad)
            gym_logger.warn(message)

    def start_recording(self, video_name: str) -> None:
        """Start a new recording; if one is running, it is stopped (and stored) first."""
        if self.recording:
            self.stop_recording()

        self.recording = True
        self._videos_started += 1
        self._video_name = video_name
        self._recorded_frames = 0
        self._size = None
        trigger = ("step" if video_name == f"{self.name_prefix}-step-{self.step_id}" else
                   "episode" if video_name == f"{self.name_prefix}-episode-{self.episode_id}" else "manual")
        self._clip = {"name": video_name, "episode": self.episode_id,
                      "step": self.step_id if trigger == "step" else None,
                      "trigger": trigger, "steps": 0, "return": 0.0, "terminated": False, "truncated": False,
                      "seed": self._reset_seed if self._episode_step == 0 else None,
                      "env_episodes": [self.episode_id]}

    def stop_recording(self) -> None:
        """Stop the current recording: the publisher closes its episode and the video is encoded,
        stored and linked in the background (`close()`/`wait()` wait for it)."""
        assert self.recording, "stop_recording was called, but no recording was started"

        if self._recorded_frames == 0:
            gym_logger.warn("Ignored saving a video as there were zero frames to save.")
        else:
            c = self._clip
            dt = getattr(self.env.unwrapped, "dt", None)
            run = self._recorder.end(
                seed=-1 if c["seed"] is None else int(c["seed"]), steps=c["steps"], episode_return=c["return"],
                terminated=c["terminated"], truncated=c["truncated"],
                sim_time_s=c["steps"] * float(dt) if isinstance(dt, (int, float)) and dt > 0 else None,
                extra={"env_episodes": c["env_episodes"]},
                report={"gymnasium": {
                    "env_id": self._env_id(), "video": c["name"], "trigger": c["trigger"],
                    "episode_id": c["episode"], "step_id": c["step"], "video_length": self.video_length
                    if self.video_length != float("inf") else 0, "name_prefix": self.name_prefix,
                    "render_fps": self.frames_per_sec, "env_episodes": c["env_episodes"]}})
            if self._candidates is not None and c["trigger"] == "episode":
                self._candidates.ended(run, Outcome(
                    index=c["episode"], seed=c["seed"], length=c["steps"], episode_return=c["return"],
                    terminated=c["terminated"], truncated=c["truncated"], info=dict(self._final_info)))
        self._final_info = {}

        self._recorded_frames = 0
        self.recording = False
        self._video_name = None

        if self.gc_trigger and self.gc_trigger(self.episode_id):
            gc.collect()

    def wait(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Block until every video recorded so far is stored (the env stays open); returns `videos`."""
        if self._recorder is not None:
            runs = self._recorder.wait(self.timeout if timeout is None else timeout)
            self._collect([r for r in runs if r.meta.get("wrapper") == self._run_tag])
        return self.videos

    def __del__(self) -> None:
        if getattr(self, "recording", False) and getattr(self, "_recorded_frames", 0):
            gym_logger.warn("Unable to save last video! Did you call close()?")

    # --- frames → the recorder thread --------------------------------------------------------------

    def _capture_frame(self, stepped: tuple | None) -> None:
        assert self.recording, "Cannot capture a frame, recording wasn't started."

        frame = self.env.render()
        if isinstance(frame, list):
            if len(frame) == 0:
                gym_logger.warn(
                    "Trying to capture render frame but 'env.render()' has just been called. The frame cannot be captured."
                )
                return
            self.render_history += frame
            frame = frame[-1]

        if not isinstance(frame, np.ndarray):
            self.stop_recording()
            gym_logger.warn(
                f"Recording stopped: expected type of frame returned by render to be a numpy array, got instead {type(frame)}."
            )
            return

        c = self._clip
        if stepped is None:
            row = {"env_episode": self.episode_id, "step": 0, "step_id": None, "reset": True, "reward": None,
                   "action": None, "terminated": False, "truncated": False}
            if self.episode_id not in c["env_episodes"]:
                c["env_episodes"].append(self.episode_id)
        else:
            action, rew, terminated, truncated = stepped
            reward = _jsonable(rew)
            row = {"env_episode": self.episode_id, "step": self._episode_step, "step_id": self.step_id,
                   "reset": False, "reward": reward, "action": _jsonable(action), "terminated": bool(terminated),
                   "truncated": bool(truncated)}
            c["steps"] += 1
            if isinstance(reward, (int, float)):
                c["return"] += float(reward)
            c["terminated"], c["truncated"] = bool(terminated), bool(truncated)
        self._send(frame, row)

    def _send(self, frame: np.ndarray, row: dict[str, Any]) -> None:
        if frame.ndim == 3 and frame.shape[2] == 4:
            frame = frame[..., :3]  # RGBA → RGB
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"RecordVideo needs HxWx3 uint8 frames from env.render(), got shape {frame.shape} "
                             f"dtype {frame.dtype}")
        height, width = int(frame.shape[0]), int(frame.shape[1])
        first = self._size is None
        if first:
            ev.check_frame_size(width, height)
            self._size = (width, height)
        elif self._size != (width, height):
            raise ValueError(f"frame size changed from {self._size[0]}x{self._size[1]} to {width}x{height} during "
                             f"recording {self._video_name}: RecordVideo needs frames of a constant size")
        # Copied (the env may reuse its render buffer) into a reused buffer: the copy is all that is queued.
        planes = [self._depth_plane()] if "depth" in self._streams else []
        if first:
            if planes:  # the depth preview's range: this recording's first frame
                from simreel.sim import perception

                model = self.env.unwrapped.model
                self._perception = perception.perception(
                    model, self._streams, preview_m=perception.preview_range(planes[0], perception.clip_planes(model)))
            self._begin(width, height)
        if planes:
            self._recorder.frame_array(frame, row, planes)
        else:
            self._recorder.frame_array(frame, row)
        self._recorded_frames += 1

    def _depth_plane(self) -> np.ndarray:
        """The depth of the frame just rendered, in metres as mujoco.Renderer gives them, quantised as
        every depth stream is. Read from the depth buffer of the very render env.render() just made
        (Gymnasium's renderer keeps its last viewer in `viewer`): the same pixels' depth at no render
        cost. Gymnasium's own `depth_array` renders again, in a second GL context (HalfCheetah:
        +83 % CPU per frame against +16 %, benchmarks/RESULTS.md); it is the fallback when the last
        render was not an offscreen one of this size."""
        import mujoco

        from simreel.sim import perception

        u = self.env.unwrapped
        r = u.mujoco_renderer
        viewer = getattr(r, "viewer", None)
        rect = getattr(viewer, "viewport", None)
        if rect is not None and hasattr(viewer, "con") and self._size == (rect.width, rect.height):
            viewer.make_context_current()
            zbuffer = np.empty((rect.height, rect.width), np.float32)
            mujoco.mjr_readPixels(None, zbuffer, rect, viewer.con)
            zbuffer = zbuffer[::-1]  # GL rows are bottom-up
        else:
            zbuffer = r.render("depth_array")
        cam = r.camera_id
        ortho = bool(u.model.cam_orthographic[cam]) if cam is not None and cam >= 0 else \
            bool(u.model.vis.global_.orthographic)
        return stream_planes.quantise_depth(perception.zbuffer_metres(zbuffer, u.model, orthographic=ortho))

    def _begin(self, width: int, height: int) -> None:
        if self._recorder is None:
            self._recorder = self._make_recorder()
        fps = self.frames_per_sec
        if round(fps) != fps:
            gym_logger.warn(f"render fps {fps} is not a whole number; the video plays at {round(fps)} fps")
        c = self._clip
        dt = getattr(self.env.unwrapped, "dt", None)
        gl = self._gl_info()
        # run id: prefix + this wrapper's tag + the gymnasium name's index, e.g. rl-video-3f9a2c1b-episode-8
        suffix = c["name"][len(self.name_prefix):].lstrip("-") if c["name"].startswith(self.name_prefix) else c["name"]
        run_id = f"{_run_prefix(self.name_prefix)}-{self._run_tag}-{re.sub(r'[^A-Za-z0-9_-]', '-', suffix)}"[:64]
        self._recorder.begin(
            run_id, width=width, height=height, fps=max(1, int(round(fps))),
            meta={"name": c["name"], "episode": c["episode"], "step": c["step"], "wrapper": self._run_tag},
            on_result=self._on_result, outputs=self.outputs,
            scene=f"gymnasium:{self._env_id()}", physics_dt=float(dt) if isinstance(dt, (int, float)) else 1.0 / fps,
            gl_backend=gl.get("backend", ""), gl_renderer=gl.get("renderer", ""),
            **({"streams": self._streams, "perception": self._perception} if len(self._streams) > 1 else {}))

    def _make_recorder(self) -> RecorderThread:
        if self._nats_url:
            nats, embedded = NatsSettings.from_env(url=self._nats_url), None
        else:
            nats, embedded = None, Path(self.video_folder) / EMBEDDED_DIR
        return RecorderThread(nats=nats, embedded_dir=embedded, session=self.session, outputs=self.outputs,
                              max_queue_bytes=self._max_queue_bytes, logger=self._log,
                              name=f"simreel-recorder-{self._run_tag}")

    def _env_id(self) -> str:
        spec = getattr(self.env, "spec", None)
        return spec.id if spec is not None else type(self.env.unwrapped).__name__

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

    # --- results (called in the recorder thread as each video is stored) ---------------------------

    def _on_result(self, run: RecordedRun) -> None:
        if run.status != "completed":
            self._log.warning("video_not_stored", video=run.meta.get("name"), status=run.status, error=run.error)
            return
        name = run.meta["name"]
        if run.discarded:
            self._log.info("video_discarded", video=name, reason=run.decision.reason)
            return
        for a in run.artifacts:
            if a.kind in ("video", "gif", "frames") and a.path and os.path.exists(a.path):
                _link(a.path, Path(self.video_folder) / _local_name(name, a.format))
            elif a.kind in ("depth", "depth_preview") and a.path and os.path.exists(a.path):
                _link(a.path, Path(self.video_folder) / f"{name}-depth.{a.format}")
        video = video_artifact(run)
        self._log.info("video_stored", video=name, url=video.url if video else None, frames=run.frames,
                       store_latency_s=round(run.store_latency_s or 0.0, 3))
        if self.on_video is not None:
            self.on_video(self._info(run))

    def _info(self, r: RecordedRun, status: str | None = None) -> RecordedVideo:
        return recorded_video(r, self.video_folder, self.frames_per_sec, status)

    def _collect(self, runs: list[RecordedRun]) -> None:
        ended = [r for r in runs if r.ended_at is not None and not r.awaiting_decision]
        self.videos = [self._info(r) for r in ended if not r.discarded]
        self.discarded = [self._info(r) for r in ended if r.discarded]

    # --- live capture controls (only ever touched between episodes) --------------------------------

    def _apply_controls(self) -> None:
        while self._controls:
            c = self._controls.popleft()
            if isinstance(c, ev.KeepRuleRequested):
                self._apply_keep(c)
                continue
            if not isinstance(c, ev.CaptureControlRequested):
                continue
            if c.action == "every" and c.every is None:
                self._refuse(c, subjects.recorder_control(self.recorder_id),
                             'action "every" needs a number: {"action": "every", "every": N}')
                continue
            self.capture.apply(c.action, c.every, self.episode_id)
            self._recorder.publish(ev.CaptureControlApplied(
                event_id=f"applied-{self.recorder_id}-{c.event_id}"[:200], run_id=self.recorder_id,
                request_event_id=c.event_id, action=c.action, every=c.every, episode=self.episode_id))
            self._log.info("capture_control_applied", recorder_id=self.recorder_id, action=c.action, every=c.every,
                           episode=self.episode_id)

    def _refuse(self, c: ev.Event, subject: str, reason: str) -> None:
        """A control this recorder cannot apply, dead-lettered with the reason (the ui shows it)."""
        self._recorder.publish(ev.DeadLettered.of(
            f"recorder-{c.event_id}"[:61], run_id=self.recorder_id, service="recorder", subject=subject,
            reason=reason, payload=ev.encode(c), preview_bytes=500))

    def _apply_keep(self, c: ev.KeepRuleRequested) -> None:
        """Another keep rule from this episode on; candidates the old rule still holds are decided by it."""
        if self.step_trigger is not None or self.video_length != float("inf"):
            self._refuse(c, subjects.recorder_keep(self.recorder_id),
                         "keep rules decide on whole episodes; this recorder records step_trigger / video_length clips")
            return
        if self._candidates is not None:
            with contextlib.suppress(RecorderError):
                self._candidates.close()
        self.keep = c.keep
        self._candidates = Candidates(c.keep, self._recorder) if c.keep is not None else None
        self.outputs = keep_outputs(self.outputs, c.keep) if c.keep is not None else \
            msgspec.structs.replace(self.outputs, keep=None)
        rule = describe_keep(c.keep) if c.keep is not None else ""
        self._recorder.publish(ev.KeepRuleApplied(
            event_id=f"keepapplied-{self.recorder_id}-{c.event_id}"[:200], run_id=self.recorder_id,
            request_event_id=c.event_id, rule=rule, episode=self.episode_id))
        self._log.info("keep_rule_applied", recorder_id=self.recorder_id, rule=rule, episode=self.episode_id)

    def _announce_state(self, state: str) -> None:
        if not self._announce or self._recorder is None:
            return
        seen = self.episode_id + 1
        self._recorder.publish(ev.RecorderAnnounced(
            event_id=f"announced-{self.recorder_id}-{seen}-{state}", run_id=self.recorder_id,
            session=self.session, env_id=self._env_id() if getattr(self.env, "spec", None) else "",
            trigger=(self.capture.describe(self._trigger_text)
                     + (f"; keep {describe_keep(self.keep)}" if self.keep is not None else ""))[:200],
            episodes_seen=max(0, seen),
            videos_recorded=self._videos_started, state=state, cadence=self.capture.every,
            recording_next=state == "running" and self.capture.peek(seen, self.episode_trigger)))
