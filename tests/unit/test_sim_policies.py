"""Policies: seeded, inside the control range, and entrypoints only when allow-listed."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from simreel.sim.errors import PolicyError  # noqa: E402
from simreel.sim.loader import resolve_scene  # noqa: E402
from simreel.sim.policies import ctrl_bounds, make_policy  # noqa: E402

THIS = "entrypoint:tests.unit.test_sim_policies:make_const"


def make_const(model, *, seed, params):
    value = np.full(model.nu, float(params.get("value", 0.5)))
    return lambda m, d, t: value


@pytest.fixture(scope="module")
def arm():
    return resolve_scene("workbench")[0]


def test_random_is_seeded_in_range_and_held(arm):
    low, high = ctrl_bounds(arm)
    a, b, c = (make_policy("random", arm, seed=s, params={"hold_s": 0.1}) for s in (3, 3, 4))
    times = np.arange(0, 1, 0.002)
    ra = np.array([a(arm, None, t) .copy() for t in times])
    rb = np.array([b(arm, None, t).copy() for t in times])
    rc = np.array([c(arm, None, t).copy() for t in times])
    assert np.array_equal(ra, rb) and not np.array_equal(ra, rc)
    assert (ra >= low).all() and (ra <= high).all()
    assert len(np.unique(ra[:, 0])) == 10  # one new action per 0.1 s hold


def test_sine_covers_the_range_with_phase_offsets(arm):
    low, high = ctrl_bounds(arm)
    p = make_policy("sine", arm, seed=0, params={"amplitude": 1.0, "frequency_hz": 1.0})
    out = np.array([p(arm, None, t).copy() for t in np.linspace(0, 1, 401)])
    assert np.allclose(out.min(axis=0), low, atol=1e-3) and np.allclose(out.max(axis=0), high, atol=1e-3)
    assert not np.allclose(out[:, 0] - (low[0] + high[0]) / 2, out[:, 1] - (low[1] + high[1]) / 2)


def test_unlimited_actuators_use_unit_range():
    model, _ = resolve_scene(
        "<mujoco><worldbody><body><joint name='j'/><geom size='.1'/></body></worldbody>"
        "<actuator><motor joint='j' ctrllimited='false'/></actuator></mujoco>")
    assert [x.tolist() for x in ctrl_bounds(model)] == [[-1.0], [1.0]]


def test_parameter_errors_are_clear(arm):
    with pytest.raises(PolicyError, match="unknown parameter.*hold"):
        make_policy("random", arm, seed=0, params={"hold": 1})
    with pytest.raises(PolicyError, match="hold_s must be > 0"):
        make_policy("random", arm, seed=0, params={"hold_s": 0})
    with pytest.raises(PolicyError, match="4 numbers"):
        make_policy("actions", arm, seed=0, params={"actions": [[1, 2]]})
    with pytest.raises(PolicyError, match="unknown policy 'dance'"):
        make_policy("dance", arm, seed=0)


def test_entrypoints_need_the_allow_list(arm):
    with pytest.raises(PolicyError, match="allow-list"):
        make_policy(THIS, arm, seed=0)
    p = make_policy(THIS, arm, seed=0, params={"value": 0.25}, allow={THIS})
    assert p(arm, None, 0.0).tolist() == [0.25] * 4
    p = make_policy(THIS, arm, seed=0, allow=["tests.unit.test_sim_policies:make_const"])
    assert p(arm, None, 0.0).tolist() == [0.5] * 4
    with pytest.raises(PolicyError, match="cannot be imported"):
        make_policy("entrypoint:no_such_mod:f", arm, seed=0, allow={"entrypoint:no_such_mod:f"})


def test_actions_replay_rows_and_hold_the_last(arm):
    p = make_policy("actions", arm, seed=0, params={"actions": [[0, 0, 0, 0], [1, 1, 1, 1]], "hold_s": 0.5})
    assert p(arm, None, 0.2).tolist() == [0, 0, 0, 0]
    assert p(arm, None, 0.5).tolist() == [1, 1, 1, 1]
    assert p(arm, None, 9.0).tolist() == [1, 1, 1, 1]
