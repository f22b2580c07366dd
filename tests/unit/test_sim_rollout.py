"""The physics + render loop: exact frame times, reproducible seeds, blank/frozen detection."""
import hashlib
import math
import os
import threading
import time
from fractions import Fraction

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from simreel.sim.errors import PolicyError, SceneError  # noqa: E402
from simreel.sim.loader import load_model, resolve_scene  # noqa: E402
from simreel.sim.policies import make_policy  # noqa: E402
from simreel.sim.rollout import EpisodeRunner, FrameSchedule, FrameStats  # noqa: E402

DARK = """<mujoco>
  <visual><headlight active="0" ambient="0 0 0" diffuse="0 0 0" specular="0 0 0"/></visual>
  <worldbody>
    <camera name="void" pos="0 0 5" xyaxes="1 0 0 0 -1 0"/>
    <geom type="box" size="1 1 1" pos="0 0 -5"/>
  </worldbody>
</mujoco>"""

STILL = """<mujoco>
  <worldbody>
    <light pos="0 0 3"/>
    <camera name="c" pos="0 -3 1" xyaxes="1 0 0 0 0.3 1"/>
    <geom type="plane" size="2 2 0.1" rgba="0.8 0.8 0.8 1"/>
    <geom type="box" size="0.3 0.3 0.3" pos="0 0 0.3" rgba="0.9 0.2 0.2 1"/>
  </worldbody>
</mujoco>"""


def run(model, *, seed=0, policy="random", duration_s=0.3, size=(64, 48), **kw):
    frames = []
    with EpisodeRunner(model, width=size[0], height=size[1], fps=30, quality="fast", **kw) as runner:
        summary = runner.run_episode(
            seed=seed, policy=make_policy(policy, model, seed=seed), duration_s=duration_s,
            on_frame=lambda f: frames.append((f.index, f.t, f.step, hashlib.blake2b(f.pixels).hexdigest())),
        )
    return summary, frames


# --- the schedule: pure arithmetic ---------------------------------------------------------------

def test_500hz_physics_30fps_frames_at_exactly_k_over_30():
    s = FrameSchedule.of(0.002, 30)
    assert (s.dt, s.fps) == (Fraction(1, 500), 30)
    for k in range(200):
        assert s.step_for(k) == -(-k * 50 // 3)  # ceil(k * 500 / 30), integers only
        assert s.frame_time(k) == float(Fraction(k, 30))
        assert 0 <= s.offset(k) < 0.002
    assert s.offset(3) == 0.0  # 3/30 s = 50 steps exactly


def test_frame_count_rules():
    s = FrameSchedule.of(0.002, 30)
    assert s.plan(duration_s=2.0) == (60, 1000)  # frames t=0..59/30, physics runs on to 2.0 s
    assert s.plan(duration_s=0.1) == (3, 50)
    assert s.plan(max_steps=100) == (7, 100)  # k/30 <= 0.2 s -> k = 0..6
    assert s.plan(max_steps=0) == (1, 0)
    assert s.plan(duration_s=2.0, max_steps=100) == (7, 100)  # whichever ends first
    with pytest.raises(ValueError):
        s.plan()


def test_ten_minutes_without_drift():
    s = FrameSchedule.of(0.002, 30)
    n, steps = s.plan(duration_s=600.0)
    assert (n, steps) == (18000, 300000)
    assert s.step_for(18000) == 300000 and s.offset(18000) == 0.0
    assert s.frame_time(17999) == 17999 / 30
    exact = FrameSchedule.of(0.001, 50)  # dt divides 1/fps: every frame on a step boundary
    assert all(exact.offset(k) == 0.0 and exact.step_for(k) == 20 * k for k in range(0, 30001, 997))
    # the naive float accumulation this replaces does drift:
    t = 0.0
    for _ in range(300000):
        t += 0.002
    assert t != 600.0


# --- episodes -------------------------------------------------------------------------------------

def test_episode_frames_land_on_the_schedule():
    model, _ = resolve_scene("cartpole")
    summary, frames = run(model, duration_s=0.5)
    assert summary.frames == len(frames) == 15
    assert summary.steps == 250 and summary.sim_time == 0.5
    for k, (idx, t, step, _) in enumerate(frames):
        assert idx == k and t == k / 30 and step == math.ceil(k * 500 / 30 - 1e-9)
    assert 0 < summary.max_frame_time_offset < 0.002
    assert not summary.blank and not summary.frozen and not summary.stopped
    assert summary.return_ < 0  # control effort is penalized
    assert summary.render_ms_total > 0 and summary.physics_ms_total > 0


def test_same_seed_same_frames_other_seed_other_frames():
    model, _ = resolve_scene("cartpole")
    a = [h for *_, h in run(model, seed=7)[1]]
    b = [h for *_, h in run(model, seed=7)[1]]
    c = [h for *_, h in run(model, seed=8)[1]]
    assert a == b
    assert a != c and a[-1] != c[-1]


def test_blank_and_frozen_are_detected():
    summary, _ = run(load_model(DARK), duration_s=0.2)
    assert summary.blank and summary.frozen
    summary, _ = run(load_model(STILL), duration_s=0.2, perturb_scale=0)
    assert summary.frozen and not summary.blank


def test_frame_stats_constant_memory_rules():
    st = FrameStats(4, 4)
    assert not st.black and not st.frozen
    frame = np.zeros((4, 4, 3), np.uint8)
    st.update(frame)
    assert st.black and not st.frozen  # one frame is not "frozen"
    st.update(frame)
    assert st.frozen
    st.update(frame + 100)  # another uniform fill: still nothing drawn
    assert not st.frozen and st.black
    drawn = frame.copy()
    drawn[1, 2] = (40, 0, 0)
    st.update(drawn)
    assert not st.black


def test_pixels_buffer_is_reused_and_max_steps_rule():
    model, _ = resolve_scene("pendulum")
    seen = []
    with EpisodeRunner(model, width=32, height=24, fps=30, quality="fast") as r:
        s = r.run_episode(seed=1, policy=make_policy("zero", model, seed=1), max_steps=100,
                          on_frame=lambda f: seen.append(f.pixels))
    assert s.steps == 100 and s.frames == 7
    assert all(p is seen[0] for p in seen)


def test_every_policy_works_without_actuators():
    model, _ = resolve_scene("boxes")
    assert model.nu == 0
    for name in ("zero", "random", "sine"):
        summary, _ = run(model, policy=name, duration_s=0.1)
        assert summary.frames == 3 and summary.return_ == 0.0
    act = make_policy("actions", model, seed=0, params={"actions": [[]]})
    assert act(model, None, 0.0).shape == (0,)


def test_free_camera_dict_and_unknown_camera():
    model, _ = resolve_scene("arm2")
    s, frames = run(model, duration_s=0.1, camera={"distance": 2.0, "azimuth": 45, "elevation": -30,
                                                      "lookat": [0, 0, 0]})
    assert s.frames == 3 and not s.blank
    s, _ = run(model, duration_s=0.1, camera={"distance": None, "azimuth": 90, "elevation": None, "lookat": None})
    assert s.frames == 3 and not s.blank  # None = keep MuJoCo's default for that field
    with pytest.raises(SceneError, match="main"):
        EpisodeRunner(model, width=32, height=24, fps=30, camera="nope")
    with pytest.raises(SceneError, match="unknown key"):
        EpisodeRunner(model, width=32, height=24, fps=30, camera={"zoom": 2})


def test_should_stop_ends_the_episode_early():
    model, _ = resolve_scene("pendulum")
    count = []
    with EpisodeRunner(model, width=32, height=24, fps=30, quality="fast") as r:
        s = r.run_episode(seed=0, policy=make_policy("zero", model, seed=0), duration_s=2.0,
                          on_frame=lambda f: count.append(f.index), should_stop=lambda: len(count) >= 4)
    assert s.stopped and s.frames == 4 and s.steps == math.ceil(3 * 500 / 30)


def test_bad_policy_output_is_a_policy_error():
    model, _ = resolve_scene("cartpole")
    with EpisodeRunner(model, width=32, height=24, fps=30, quality="fast") as r:
        with pytest.raises(PolicyError, match="2 actuator"):
            r.run_episode(seed=0, policy=lambda m, d, t: np.zeros(5), duration_s=0.1, on_frame=lambda f: None)
        with pytest.raises(PolicyError, match="ZeroDivisionError"):
            r.run_episode(seed=0, policy=lambda m, d, t: 1 / 0, duration_s=0.1, on_frame=lambda f: None)


def test_runner_lives_in_one_worker_thread():
    model, _ = resolve_scene("pendulum")
    out = {}

    def worker():
        runner = EpisodeRunner(model, width=32, height=24, fps=30, quality="fast")
        out["runner"] = runner
        out["summary"] = runner.run_episode(seed=0, policy=make_policy("sine", model, seed=0),
                                            duration_s=0.1, on_frame=lambda f: None)
        out["gl"] = runner.gl
        done.wait(60)
        runner.close()

    done = threading.Event()
    t = threading.Thread(target=worker)
    t.start()
    deadline = time.monotonic() + 60
    while "gl" not in out:
        assert time.monotonic() < deadline and t.is_alive(), "the rendering thread did not render within 60 s"
        t.join(0.05)
    with pytest.raises(RuntimeError, match="thread"):
        out["runner"].run_episode(seed=0, policy=make_policy("zero", model, seed=0), duration_s=0.1,
                                  on_frame=lambda f: None)
    done.set()
    t.join(60)
    assert not t.is_alive(), "the rendering thread did not finish within 60 s"
    assert out["summary"].frames == 3
    assert out["gl"]["renderer"] and isinstance(out["gl"]["software"], bool)
