"""Which state channels a run records per frame, and how they are named."""
import mujoco
import pytest

from simreel.sim import state

MJCF = """<mujoco><worldbody>
  <body name="base"><freejoint name="root"/><geom size=".1"/>
    <body name="arm"><joint name="shoulder" type="hinge"/><geom size=".05"/>
      <body name="wrist"><joint name="wrist" type="ball"/><geom size=".02"/></body></body></body>
  </worldbody>
  <actuator><motor name="m_shoulder" joint="shoulder"/></actuator>
  <sensor><jointpos name="shoulder_pos" joint="shoulder"/><framepos name="wrist_xyz" objtype="body" objname="wrist"/></sensor>
</mujoco>"""


def test_names_follow_joints_sensors_and_actuators():
    names = state.mujoco_names(mujoco.MjModel.from_xml_string(MJCF))
    assert names["qpos"] == ["root.x", "root.y", "root.z", "root.qw", "root.qx", "root.qy", "root.qz", "shoulder",
                             "wrist.qw", "wrist.qx", "wrist.qy", "wrist.qz"]
    assert names["qvel"] == ["root.vx", "root.vy", "root.vz", "root.wx", "root.wy", "root.wz", "shoulder",
                             "wrist.wx", "wrist.wy", "wrist.wz"]
    assert names["sensordata"] == ["shoulder_pos", "wrist_xyz.0", "wrist_xyz.1", "wrist_xyz.2"]
    assert names["action"] == ["m_shoulder"]


def test_defaults_take_what_fits_and_say_what_was_left_out():
    avail = {"qpos": ["a"] * 12, "qvel": ["b"] * 10, "sensordata": ["c"] * 4, "action": ["m"]}
    p = state.plan(avail, None, state.MUJOCO_FIELDS, limit=20)
    assert p.fields == ("qpos", "sensordata") and p.skipped == {"qvel": 10}
    assert set(p.names) == {"qpos", "sensordata", "action"}
    assert state.plan(avail, [], state.MUJOCO_FIELDS, limit=20).fields == ()


def test_an_explicit_request_past_the_limit_is_a_clear_error():
    avail = {"qpos": ["a"] * 12, "qvel": ["b"] * 10}
    with pytest.raises(state.TelemetryTooLarge, match=r"22 numbers per frame \(qpos 12, qvel 10\); at most 20"):
        state.plan(avail, ["qpos", "qvel"], state.MUJOCO_FIELDS, limit=20)
    with pytest.raises(state.TelemetryFieldUnavailable, match="'obs' is not recorded"):
        state.plan(avail, ["obs"], state.MUJOCO_FIELDS, limit=20)
    assert state.TelemetryTooLarge.field == "outputs.telemetry_fields"


def test_runner_copies_the_chosen_state_into_each_frame():
    from simreel.sim.policies import make_policy
    from simreel.sim.rollout import EpisodeRunner

    model = mujoco.MjModel.from_xml_string(MJCF.replace("<worldbody>", "<worldbody><camera name='c' pos='0 -2 0' xyaxes='1 0 0 0 0 1'/>"))
    rows = []
    runner = EpisodeRunner(model, width=32, height=32, fps=10, quality="fast", state_fields=("qpos", "sensordata"))
    try:
        runner.run_episode(seed=0, policy=make_policy("zero", model, seed=0), duration_s=0.3, on_frame=lambda f: rows.append(f.state))
    finally:
        runner.close()
    assert len(rows) == 3 and set(rows[0]) == {"qpos", "sensordata"}
    assert len(rows[0]["qpos"]) == 12 and len(rows[0]["sensordata"]) == 4
    assert rows[0]["qpos"][2] != rows[-1]["qpos"][2]  # the free body falls
