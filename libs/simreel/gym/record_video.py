"""The single-env RecordVideo (exported as `simreel.gym.RecordVideo`; the package docstring says what
it does): Gymnasium's triggers and names over one EnvClips stream, with live controls from a ui."""
from __future__ import annotations

import contextlib
import gc
import uuid
from typing import Any, Callable, Sequence, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import logger as gym_logger

from simreel.capture import CaptureState, describe_trigger
from simreel.contract import events as ev
from simreel.gym.arguments import check_render_mode, drop_in_logger, prepare_video_folder
from simreel.gym.clips import VideoCallback, recorded_video
from simreel.gym.depth import check_streams, depth_plane
from simreel.gym.env_clips import EnvClips, env_id
from simreel.gym.files import jsonable, run_prefix
from simreel.gym.keeping import keep_outputs
from simreel.gym.live import LiveControl
from simreel.gym.schedules import default_triggers
from simreel.gym.stored import report_unstored
from simreel.gym.video_info import RecordedVideo
from simreel.recorder import DEFAULT_QUEUE_BYTES, RecordedRun, RecorderError, RecorderThread
from simreel.recorder.folder import recorder_for_folder


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

    Read-only: `recorder` (the RecorderThread it records through: `recorder.url` is its bus),
    `recorder_id` (its id on the bus), `capture` (the capture controls in force) and `pending_controls`
    (a ui's requests received and waiting for the next episode boundary).
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
        self._streams = self._check_arguments(env, streams, keep, step_trigger, video_length)
        gym.Wrapper.__init__(self, env)
        self._schedule(episode_trigger, step_trigger, video_length, keep, gc_trigger)
        self._gymnasium_state(video_folder, fps, name_prefix, disable_logger)
        self.session, self.timeout, self.strict = session, float(timeout), strict
        self.videos: list[RecordedVideo] = []
        self.discarded: list[RecordedVideo] = []  # with keep=: the episodes the rule did not keep
        self._log = drop_in_logger("simreel.gym", disable_logger)
        self._run_tag = uuid.uuid4().hex[:8]
        self.recorder_id = f"{run_prefix(name_prefix)}-{self._run_tag}"
        self._closed = False
        self._episode_step = 0  # the env's current episode, for telemetry
        self._reset_seed: int | None = None
        self._videos_started = 0
        self._wire_recorder(recorder, nats_url=nats_url, outputs=outputs, keep=keep, max_queue_bytes=max_queue_bytes,
                            on_video=on_video, announce=announce, video_length=video_length)
        # Start-up (the embedded stack, the connection) runs in the background from here on, so it
        # overlaps the caller's set-up instead of sitting in front of the first recorded step.
        self._recorder.start()
        self._announce("running")

    @staticmethod
    def _check_arguments(env: gym.Env, streams: Sequence[str], keep: Any, step_trigger: Any,
                         video_length: int) -> tuple[str, ...]:
        """Refuse what cannot be recorded before anything starts; returns the streams to record."""
        checked = check_streams(env, streams)
        check_render_mode(env.render_mode)
        if keep is not None and (step_trigger is not None or video_length):
            raise ValueError("keep= decides on whole episodes: it cannot be combined with step_trigger or "
                             "video_length")
        return checked

    def _schedule(self, episode_trigger, step_trigger, video_length: int, keep: Any, gc_trigger) -> None:
        """Which episodes and steps start a video, and how long one lasts (Gymnasium's rules)."""
        self.episode_trigger, self.step_trigger = default_triggers(episode_trigger, step_trigger, keep)
        self._trigger_text = describe_trigger(self.episode_trigger, self.step_trigger, video_length)
        self.video_length: int = video_length if video_length != 0 else float("inf")
        self.gc_trigger = gc_trigger

    def _gymnasium_state(self, folder: str, fps: int | None, name_prefix: str, disable_logger: bool) -> None:
        """The attributes Gymnasium's RecordVideo has, with its meaning."""
        self.video_folder = prepare_video_folder(folder)
        self.frames_per_sec: int = self.metadata.get("render_fps", 30) if fps is None else fps
        self.name_prefix: str = name_prefix
        self.disable_logger = disable_logger
        self.render_history: list = []
        self.step_id = -1
        self.episode_id = -1

    def _wire_recorder(self, recorder: RecorderThread | None, *, nats_url: str | None,
                       outputs: ev.OutputSpec | None, keep: Any, max_queue_bytes: int,
                       on_video: VideoCallback | None, announce: bool, video_length: int) -> None:
        """The recorder (its own unless one is shared), the clips it records and the live controls it
        listens to (subscribed before it starts, so none is missed)."""
        outputs = keep_outputs(outputs, keep) if keep is not None else (outputs or ev.OutputSpec())
        self._owns_recorder = recorder is None
        self._recorder = recorder or recorder_for_folder(
            self.video_folder, nats_url=nats_url, session=self.session, outputs=outputs,
            max_queue_bytes=max_queue_bytes, logger=self._log, name=f"simreel-recorder-{self._run_tag}")
        self._clips = EnvClips(self.env, streams=self._streams, video_length=video_length, recorder=self._recorder,
                               video_folder=self.video_folder, tag=self._run_tag, name_prefix=self.name_prefix,
                               fps=self.frames_per_sec, on_video=on_video, logger=self._log, keep=keep,
                               outputs=outputs)
        self._live = LiveControl(self._recorder, recorder_id=self.recorder_id, session=self.session,
                                 env_id=env_id(self.env) if getattr(self.env, "spec", None) else "",
                                 trigger_text=self._trigger_text, announce=announce, logger=self._log)
        self._live.listen()

    # --- public state ------------------------------------------------------------------------------

    @property
    def recorder(self) -> RecorderThread:
        """The RecorderThread this wrapper records through: its own, or the one it was given."""
        return self._recorder

    @property
    def pending_controls(self) -> tuple[ev.Event, ...]:
        """Capture controls and keep rules received from a ui and not applied yet: they apply at the
        next episode boundary (reset)."""
        return self._live.pending

    @property
    def capture(self) -> CaptureState:
        """The capture controls in force (record next, every N, off, stop)."""
        return self._live.capture

    @property
    def recording(self) -> bool:
        return self._clips.recording

    @property
    def recorded_frame_count(self) -> int:
        """Frames of the current recording so far (gymnasium's `len(recorded_frames)`; none are kept)."""
        return self._clips.frames

    @property
    def keep(self) -> Any:
        """The keep rule in force (a ui may change it between episodes)."""
        return self._clips.keep

    @property
    def outputs(self) -> ev.OutputSpec:
        """What each video's run produces, with the keep rule announced."""
        return self._clips.outputs

    @property
    def on_video(self) -> VideoCallback | None:
        return self._clips.on_video

    @on_video.setter
    def on_video(self, callback: VideoCallback | None) -> None:
        self._clips.on_video = callback

    # --- gymnasium's API ---------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the environment and eventually start a new recording (gymnasium's rule, unchanged)."""
        obs, info = super().reset(seed=seed, options=options)
        self.episode_id += 1
        self._episode_step = 0
        self._reset_seed = seed

        if self.recording and self.video_length == float("inf"):
            self.stop_recording()

        self._live.apply(self.episode_id, self._clips,
                         whole_episodes=self.step_trigger is None and self.video_length == float("inf"))
        if self.capture.stopped and self.recording:
            self.stop_recording()
        if self.capture.decide(self.episode_id, self.episode_trigger):
            self.start_recording(f"{self.name_prefix}-episode-{self.episode_id}")
        if self.recording:
            self._capture_frame(None)
            if self._clips.frames > self.video_length:
                self.stop_recording()
        self._announce("running")

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
                self._clips.final_info = info
            self._capture_frame((action, rew, terminated, truncated))

            if self._clips.frames > self.video_length:
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
        self._end_recordings()
        self._announce("closed")
        # A shared recorder belongs to its creator: wait for our videos, leave it running.
        runs = self._recorder.close(self.timeout) if self._owns_recorder else self._recorder.wait(self.timeout)
        runs = self._own(runs)
        self._collect(runs)
        where = f"; service logs in {self._recorder.log_dir}" if self._recorder.log_dir else ""
        report_unstored([r for r in runs if r.status != "completed"], len(runs), strict=self.strict, where=where)

    def start_recording(self, video_name: str) -> None:
        """Start a new recording; if one is running, it is stopped (and stored) first."""
        if self.recording:
            self.stop_recording()
        self._videos_started += 1
        trigger = ("step" if video_name == f"{self.name_prefix}-step-{self.step_id}" else
                   "episode" if video_name == f"{self.name_prefix}-episode-{self.episode_id}" else "manual")
        self._clips.start(video_name, trigger=trigger, episode=self.episode_id,
                          step=self.step_id if trigger == "step" else None,
                          seed=self._reset_seed if self._episode_step == 0 else None)

    def stop_recording(self) -> None:
        """Stop the current recording: the publisher closes its episode and the video is encoded,
        stored and linked in the background (`close()`/`wait()` wait for it)."""
        assert self.recording, "stop_recording was called, but no recording was started"

        if self._clips.frames == 0:
            gym_logger.warn("Ignored saving a video as there were zero frames to save.")
        self._clips.stop()

        if self.gc_trigger and self.gc_trigger(self.episode_id):
            gc.collect()

    def wait(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Block until every video recorded so far is stored (the env stays open); returns `videos`."""
        runs = self._recorder.wait(self.timeout if timeout is None else timeout)
        self._collect(self._own(runs))
        return self.videos

    def __del__(self) -> None:
        clips = self.__dict__.get("_clips")
        if clips is not None and clips.recording and clips.frames:
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

        if stepped is None:
            row = {"env_episode": self.episode_id, "step": 0, "step_id": None, "reset": True, "reward": None,
                   "action": None, "terminated": False, "truncated": False}
            self._clips.reached(self.episode_id)
        else:
            action, rew, terminated, truncated = stepped
            row = {"env_episode": self.episode_id, "step": self._episode_step, "step_id": self.step_id,
                   "reset": False, "reward": jsonable(rew), "action": jsonable(action),
                   "terminated": bool(terminated), "truncated": bool(truncated)}
        self._send(frame, row)

    def _send(self, frame: np.ndarray, row: dict[str, Any]) -> None:
        planes = [depth_plane(self.env, (frame.shape[1], frame.shape[0]))] if "depth" in self._streams else ()
        self._clips.add(frame, row, planes, converted=True)

    # --- results -----------------------------------------------------------------------------------

    def _own(self, runs: list[RecordedRun]) -> list[RecordedRun]:
        """This wrapper's runs (a shared recorder carries others' too)."""
        return [r for r in runs if r.meta.get("wrapper") == self._run_tag]

    def _collect(self, runs: list[RecordedRun]) -> None:
        ended = [r for r in runs if r.ended_at is not None and not r.awaiting_decision]
        self.videos = [self._info(r) for r in ended if not r.discarded]
        self.discarded = [self._info(r) for r in ended if r.discarded]

    def _info(self, r: RecordedRun, status: str | None = None) -> RecordedVideo:
        return recorded_video(r, self.video_folder, self.frames_per_sec, status)

    def _end_recordings(self) -> None:
        """At close: the current recording ends and every keep decision still pending is made (a
        recorder that already failed is reported with the runs instead)."""
        if self.recording:
            try:
                self.stop_recording()
            except RecorderError as e:
                self._log.warning("last_video_lost", video=self._clips.name, error=str(e))
                self._clips.drop()
        if self._clips.candidates is not None:
            with contextlib.suppress(RecorderError):
                self._clips.candidates.close()

    def _announce(self, state: str) -> None:
        self._live.announce(state, episodes_seen=self.episode_id + 1, videos_recorded=self._videos_started,
                            keep=self.keep, episode_trigger=self.episode_trigger)

