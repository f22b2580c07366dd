"""simreel.gym.RecordVideo records exactly what gymnasium.wrappers.RecordVideo records.

Both wrappers are driven through the same episodes of a small deterministic env; gymnasium's own
wrapper (its real trigger code, with the MP4 writing left out) says which videos it would write and
how many frames each has, and ours must hand the same videos, frame for frame, to its recorder.
The recorder here is a list (the bus path is covered by tests/integration/test_gym_wrapper.py).
"""
from __future__ import annotations

import contextlib
import importlib.util
import sys
import types

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from simreel.gym import RecordVideo, capped_cubic_video_schedule
from simreel.recorder import RecordedRun


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a dotted name whose parent package is missing
        return False


@contextlib.contextmanager
def moviepy_import_check():
    """gymnasium's RecordVideo checks `import moviepy` in __init__; the reference below never writes a
    file, so while it is built an empty module stands in when moviepy (benchmark-only) is absent."""
    if installed("moviepy"):
        yield
        return
    sys.modules["moviepy"] = types.ModuleType("moviepy")
    try:
        yield
    finally:
        del sys.modules["moviepy"]


class Toy(gymnasium.Env):
    """Episodes of known, varied lengths (3..13 steps); each frame shows the step count."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str = "rgb_array") -> None:
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 1000, (1,), np.float32)
        self.action_space = spaces.Box(-1, 1, (2,), np.float32)
        self.episode = -1
        self.t = 0
        self.length = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        self.length = 3 + (self.episode * 7) % 11
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 0.5, self.t >= self.length, False, {}

    def render(self):
        return np.full((16, 24, 3), self.t % 256, np.uint8)


class ListRecorder:
    """Stands in for RecorderThread: keeps each run's frame count, telemetry rows and episode summary."""

    log_dir = None

    def __init__(self) -> None:
        self.runs: list[RecordedRun] = []
        self.rows: dict[str, list[dict]] = {}
        self.sizes: dict[str, tuple[int, int, int]] = {}
        self._current: RecordedRun | None = None
        self.subscribers: dict[str, list] = {}

    def begin(self, run_id, *, width, height, fps, meta=None, on_result=None, **kwargs):
        assert self._current is None, "a run began before the previous one ended"
        run = RecordedRun(run_id=run_id, meta={**(meta or {}), "begin": kwargs})
        self.runs.append(run)
        self.rows[run_id] = []
        self.sizes[run_id] = (width, height, fps)
        self._current = run
        return run

    def frame(self, pixels, telemetry=None):
        w, h, _ = self.sizes[self._current.run_id]
        assert len(pixels) == w * h * 3
        self._current.frames += 1
        self.rows[self._current.run_id].append(telemetry)

    def frame_array(self, frame, telemetry=None, planes=()):
        self.frame(np.ascontiguousarray(frame).tobytes(), telemetry)

    def end(self, *, report=None, **episode):
        run, self._current = self._current, None
        run.meta.update(episode=episode, report=report)
        run.ended_at = 0.0
        run.status, run.finished = "completed", True
        return run

    def wait(self, timeout=None):
        return list(self.runs)

    def close(self, timeout=300.0):
        return list(self.runs)

    # announcements, keep decisions and live controls: published events are kept; a control arrives
    # through deliver(), as the recorder thread calls a subscriber
    events: list
    session = "default"

    def start(self):
        self.events = []

    def publish(self, event):
        self.events.append(event)

    def decide(self, run, event):
        run.awaiting_decision = False
        self.events.append(event)

    def subscribe(self, subject, callback):
        self.subscribers.setdefault(subject, []).append(callback)

    def deliver(self, subject, event):
        for callback in self.subscribers.get(subject, []):
            callback(event)


class GymnasiumReference(gymnasium.wrappers.RecordVideo):
    """gymnasium's wrapper, unchanged except that stop_recording notes (name, frames) instead of encoding."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.saved: list[tuple[str, int]] = []

    def stop_recording(self) -> None:
        assert self.recording
        if self.recorded_frames:
            self.saved.append((self._video_name, len(self.recorded_frames)))
        self.recorded_frames = []
        self.recording = False
        self._video_name = None


def drive(env: gymnasium.Env, episodes: int, rng_seed: int = 0) -> None:
    rng = np.random.default_rng(rng_seed)
    for ep in range(episodes):
        env.reset(seed=ep)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
            done = terminated or truncated
    env.close()


def both(tmp_path, episodes: int, **kwargs) -> tuple[list[tuple[str, int]], list[tuple[str, int]], ListRecorder]:
    kwargs.setdefault("gc_trigger", None)  # a full gc.collect() per video only slows the test down
    with moviepy_import_check():
        ref = GymnasiumReference(Toy(), str(tmp_path / "gymnasium"), disable_logger=True, **kwargs)
    drive(ref, episodes)
    sink = ListRecorder()
    ours = RecordVideo(Toy(), str(tmp_path / "simreel"), recorder=sink, **kwargs)
    drive(ours, episodes)
    return ref.saved, [(r.meta["name"], r.frames) for r in sink.runs], sink


SCENARIOS = {
    "every-3rd-episode": dict(episode_trigger=lambda e: e % 3 == 0),
    "episode-clips-of-5": dict(episode_trigger=lambda e: e % 4 == 1, video_length=5),
    "clips-across-episodes": dict(episode_trigger=lambda e: e in (2, 9), video_length=40),
    "step-clips": dict(step_trigger=lambda s: s % 25 == 0, video_length=10),
    "step-until-reset": dict(step_trigger=lambda s: s % 30 == 7),
    "both-triggers": dict(episode_trigger=lambda e: e % 5 == 0, step_trigger=lambda s: s % 40 == 3, video_length=6),
    "prefix-and-fps": dict(episode_trigger=lambda e: e < 2, name_prefix="eval/run 1", fps=7),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_videos_and_frames_as_gymnasium(tmp_path, name):
    expected, got, _ = both(tmp_path, 20, **SCENARIOS[name])
    assert expected, "the scenario must record something"
    assert got == expected


def test_default_trigger_is_gymnasiums_capped_cubic_schedule(tmp_path):
    sink = ListRecorder()
    drive(RecordVideo(Toy(), str(tmp_path / "simreel"), recorder=sink, gc_trigger=None), 30)
    got = [(r.meta["name"], r.frames) for r in sink.runs]
    assert [n for n, _ in got] == ["rl-video-episode-0", "rl-video-episode-1", "rl-video-episode-8",
                                   "rl-video-episode-27"]
    # gymnasium's own default trigger lives in a module that imports moviepy's writer.
    if installed("moviepy.video.io.ImageSequenceClip"):
        expected, _, _ = both(tmp_path, 30)
        assert got == expected


def test_capped_cubic_schedule_matches_gymnasium():
    chosen = [e for e in range(5001) if capped_cubic_video_schedule(e)]
    assert chosen == [k ** 3 for k in range(10)] + [1000, 2000, 3000, 4000, 5000]
    if installed("moviepy.video.io.ImageSequenceClip"):
        from gymnasium.utils.save_video import capped_cubic_video_schedule as theirs

        assert chosen == [e for e in range(5001) if theirs(e)]


def test_telemetry_row_per_frame_with_step_reward_action(tmp_path):
    _, got, sink = both(tmp_path, 4, episode_trigger=lambda e: e == 1)
    [run] = sink.runs
    rows = sink.rows[run.run_id]
    assert len(rows) == run.frames == got[0][1]
    assert rows[0]["reset"] is True and rows[0]["step"] == 0 and rows[0]["action"] is None
    assert [r["step"] for r in rows] == list(range(len(rows)))
    assert all(r["reward"] == 0.5 and len(r["action"]) == 2 for r in rows[1:])
    assert rows[-1]["terminated"] is True and not any(r["terminated"] for r in rows[:-1])
    ended = run.meta["episode"]
    assert ended["steps"] == len(rows) - 1 and ended["episode_return"] == pytest.approx(0.5 * (len(rows) - 1))
    assert ended["terminated"] is True and ended["seed"] == 1
    assert run.meta["begin"]["scene"] == "gymnasium:Toy"
    assert sink.sizes[run.run_id] == (24, 16, 10)


def test_run_ids_are_valid_and_distinct(tmp_path):
    _, got, sink = both(tmp_path, 10, episode_trigger=lambda e: True, name_prefix="my eval/prefix.with.dots")
    ids = [r.run_id for r in sink.runs]
    assert len(set(ids)) == len(ids) == 10
    import re

    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", i) for i in ids)
    assert ids[3].endswith("-episode-3")


def test_refuses_render_modes_without_images(tmp_path):
    with pytest.raises(ValueError, match="rgb_array"):
        RecordVideo(Toy(render_mode=None), str(tmp_path))


def test_frames_must_keep_their_size(tmp_path):
    class Growing(Toy):
        def render(self):
            return np.zeros((16, 16 + self.t, 3), np.uint8)

    env = RecordVideo(Growing(), str(tmp_path), episode_trigger=lambda e: True, recorder=ListRecorder())
    env.reset(seed=0)
    with pytest.raises(ValueError, match="constant size"):
        env.step(np.zeros(2, np.float32))


def test_announces_at_each_episode_boundary_and_at_close_never_inside_step(tmp_path):
    from simreel.contract import events as ev

    rec = ListRecorder()
    env = RecordVideo(Toy(), str(tmp_path), episode_trigger=lambda e: e % 2 == 0, recorder=rec)
    env.reset(seed=0)
    published = len(rec.events)
    for _ in range(3):
        env.step(np.zeros(2, np.float32))
    assert len(rec.events) == published  # steps publish nothing
    env.close()
    states = [(e.episodes_seen, e.recording_next, e.state) for e in rec.events if isinstance(e, ev.RecorderAnnounced)]
    assert states == [(0, True, "running"), (1, False, "running"), (1, False, "closed")]
    assert all(e.run_id == env.recorder_id for e in rec.events)


def episodes(env: gymnasium.Env, n: int) -> None:
    for _ in range(n):
        env.reset(seed=0)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(np.zeros(2, np.float32))
            done = terminated or truncated


def test_a_keep_rule_from_a_ui_waits_for_the_next_episode_then_decides_its_videos(tmp_path):
    from simreel.contract import events as ev
    from simreel.contract import keep, subjects

    rec = ListRecorder()
    env = RecordVideo(Toy(), str(tmp_path), episode_trigger=lambda e: True, recorder=rec, gc_trigger=None)
    episodes(env, 1)  # episode 0, recorded with no rule
    assert env.keep is None and env.outputs.keep is None
    request = ev.KeepRuleRequested(run_id=env.recorder_id, keep=keep.return_above(100.0), requested_by="test")
    rec.deliver(subjects.recorder_keep(env.recorder_id), request)
    assert env.pending_controls == (request,)  # applied between episodes, never inside step()
    episodes(env, 2)  # episodes 1 and 2: Toy's returns are at most 6.5, so the rule keeps neither
    env.close()

    assert env.pending_controls == ()
    assert env.keep == keep.return_above(100.0) and env.outputs.keep == keep.return_above(100.0)
    [applied] = [e for e in rec.events if isinstance(e, ev.KeepRuleApplied)]
    assert (applied.request_event_id, applied.episode) == (request.event_id, 1)
    decided = [e for e in rec.events if isinstance(e, (ev.EpisodeKept, ev.EpisodeDiscarded))]
    assert [(type(e), e.candidate) for e in decided] == [(ev.EpisodeDiscarded, 1), (ev.EpisodeDiscarded, 2)]
    assert [r.meta["name"] for r in rec.runs if r.decision is None] == ["rl-video-episode-0"]


def test_a_keep_rule_sent_to_a_recorder_of_step_clips_is_refused_with_the_reason(tmp_path):
    from simreel.contract import events as ev
    from simreel.contract import keep, subjects

    rec = ListRecorder()
    env = RecordVideo(Toy(), str(tmp_path), step_trigger=lambda s: s % 10 == 0, video_length=5, recorder=rec,
                      gc_trigger=None)
    episodes(env, 1)
    request = ev.KeepRuleRequested(run_id=env.recorder_id, keep=keep.failures(), requested_by="test")
    rec.deliver(subjects.recorder_keep(env.recorder_id), request)
    episodes(env, 1)
    env.close()

    assert env.keep is None and env.pending_controls == ()
    [dead] = [e for e in rec.events if isinstance(e, ev.DeadLettered)]
    assert "keep rules decide on whole episodes" in dead.reason and request.event_id in dead.payload_preview
    assert not any(isinstance(e, ev.KeepRuleApplied) for e in rec.events)
