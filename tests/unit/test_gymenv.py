"""`scene="gymnasium:<EnvId>"` scenes: validation, the env's own fps, frame counts, policies, safety."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from simreel.sim.errors import PolicyError, SceneError
from simreel.sim.gymenv import GymEpisodeRunner, make_policy, open_gym_scene, parse_scene


@pytest.fixture(scope="module")
def reacher():
    factory, info = open_gym_scene("gymnasium:Reacher-v5", {}, 160, 120)
    runner = GymEpisodeRunner(factory, width=info["width"], height=info["height"], fps=30)
    yield runner, info
    runner.close()


def collect(runner, **kw):
    frames = []

    def on_frame(f):
        assert f.pixels.shape == (120, 160, 3) and f.pixels.dtype == np.uint8
        frames.append((f.index, f.t, f.step, f.reward, list(f.action), f.pixels.copy()))

    summary = runner.run_episode(on_frame=on_frame, **kw)
    return summary, frames


def test_open_reports_the_env_own_fps_dt_and_size(reacher):
    runner, info = reacher
    assert info["fps"] == 50 and info["dt"] == pytest.approx(0.02)
    assert (info["width"], info["height"]) == (160, 120) and not info["sized_by_env"]
    assert info["label"] == "gymnasium:Reacher-v5" and info["max_episode_steps"] == 50
    assert runner.fps == 50  # requested 30: frames come at the env's render_fps
    assert runner.gl["renderer"]


def test_duration_gives_fps_times_duration_frames_at_k_over_fps(reacher):
    runner, _ = reacher
    summary, frames = collect(runner, seed=1, policy="random", duration_s=0.5)
    assert summary.frames == len(frames) == 25 and summary.steps == 25
    assert [f[0] for f in frames] == list(range(25)) and [f[2] for f in frames] == list(range(25))
    assert frames[3][1] == pytest.approx(3 / 50)
    assert frames[0][4] == [] and all(len(f[4]) == 2 for f in frames[1:])
    assert summary.sim_time == pytest.approx(0.5) and summary.truncated and not summary.terminated
    assert not summary.blank and not summary.frozen


def test_max_steps_includes_the_reset_frame(reacher):
    runner, _ = reacher
    summary, frames = collect(runner, seed=1, policy="zero", max_steps=10)
    assert (summary.steps, summary.frames) == (10, 11)
    assert summary.return_ == pytest.approx(sum(f[3] for f in frames))  # every step was rendered


def test_same_seed_same_video_other_seed_other_video(reacher):
    runner, _ = reacher
    a = collect(runner, seed=4, policy="random", max_steps=15)[1]
    b = collect(runner, seed=4, policy="random", max_steps=15)[1]
    c = collect(runner, seed=5, policy="random", max_steps=15)[1]
    assert all(np.array_equal(x[5], y[5]) for x, y in zip(a, b))
    assert not all(np.array_equal(x[5], y[5]) for x, y in zip(a, c))


def test_termination_ends_the_episode_with_its_last_frame():
    factory, info = open_gym_scene("gymnasium:InvertedDoublePendulum-v5", {}, 160, 120)
    with GymEpisodeRunner(factory, width=160, height=120) as runner:
        summary, frames = collect(runner, seed=0, policy="random", duration_s=30)
    assert summary.terminated and not summary.truncated
    assert summary.frames == summary.steps + 1 < 30 * info["fps"]


def test_should_stop_ends_early(reacher):
    runner, _ = reacher
    calls = []
    summary = runner.run_episode(seed=0, policy="zero", duration_s=1.0, on_frame=lambda f: None,
                                 should_stop=lambda: len(calls) > 5 or calls.append(1))
    assert summary.stopped and summary.frames == 6


def test_runner_belongs_to_its_thread(reacher):
    runner, _ = reacher
    errors = []

    def other():
        try:
            runner.run_episode(seed=0, policy="zero", max_steps=1, on_frame=lambda f: None)
        except RuntimeError as e:
            errors.append(str(e))

    t = threading.Thread(target=other)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the other thread did not return within 60 s"
    assert errors and "thread" in errors[0]


def test_policies_over_action_spaces():
    import gymnasium.spaces as sp

    box = sp.Box(np.array([0.5, -2.0], np.float32), np.array([1.0, 2.0], np.float32), dtype=np.float32)
    assert make_policy("zero", box, seed=0)(None, 0.0).tolist() == [0.5, 0.0]  # zero, clipped into the box
    r1, r2 = make_policy("random", box, seed=3), make_policy("random", box, seed=3)
    assert [r1(None, 0).tolist() for _ in range(3)] == [r2(None, 0).tolist() for _ in range(3)]
    s = make_policy("sine", box, seed=0, params={"amplitude": 1.0})
    assert box.contains(s(None, 0.3)) and not np.array_equal(s(None, 0.0), s(None, 0.5))
    assert make_policy("zero", sp.Discrete(3, start=1), seed=0)(None, 0) == 1
    with pytest.raises(PolicyError, match="Box"):
        make_policy("sine", sp.Discrete(3), seed=0)
    with pytest.raises(PolicyError, match="unknown policy"):
        make_policy("entrypoint:os:system", box, seed=0)
    with pytest.raises(PolicyError, match="unknown parameter"):
        make_policy("random", box, seed=0, params={"hold_s": 1})


@pytest.mark.parametrize("scene, kwargs, message", [
    ("gymnasium:HalfCheeta-v5", {}, "did you mean HalfCheetah-v5"),
    ("gymnasium:os:system", {}, "no module imports"),
    ("gymnasium:", {}, "expected gymnasium:<EnvId>"),
    ("gymnasium:HalfCheetah-v5", {"xml_file": "/etc/passwd"}, "may not name files"),
    ("gymnasium:HalfCheetah-v5", {"frame_skip": "../x.xml"}, "may not name files"),
    ("gymnasium:HalfCheetah-v5", {"width": 10}, "render.width"),
])
def test_refused_scenes_say_why(scene, kwargs, message):
    with pytest.raises(SceneError, match=message):
        open_gym_scene(scene, kwargs, 160, 120)


def test_allow_list():
    assert parse_scene("gymnasium:Reacher-v5", allow={"Reacher-v5"}) == "Reacher-v5"
    with pytest.raises(SceneError, match="allow-list"):
        parse_scene("gymnasium:HalfCheetah-v5", allow={"Reacher-v5"})


def test_env_kwargs_reach_the_env():
    _, info = open_gym_scene("gymnasium:Reacher-v5", {"max_episode_steps": 7, "camera_id": -1}, 64, 48)
    assert info["max_episode_steps"] == 7 and (info["width"], info["height"]) == (64, 48)


@pytest.mark.parametrize("kwargs", [{"camera_id": 0}, {"camera_name": "nope"}])
def test_cameras_the_scene_lacks_are_refused_not_fatal(kwargs):
    # Reacher has no cameras: MuJoCo would abort the whole process on camera_id=0.
    with pytest.raises(SceneError, match="camera"):
        open_gym_scene("gymnasium:Reacher-v5", kwargs, 64, 48)
