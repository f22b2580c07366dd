"""The blank-frame guard on real renders: Gymnasium's MuJoCo envs are not blank, nothing drawn is.

A frame is blank when nothing in it differs from a uniform fill. Dark scenes that draw something
(InvertedPendulum's bright pole on black, mean pixel 2.4) must not be flagged at any size, and a render
with nothing in view must be, with `fail_on_blank` failing the run.
"""
from __future__ import annotations

import gymnasium as gym
import pytest

from simreel.contract import events as ev
from simreel.client import Client
from simreel.runtime.config import NatsSettings
from simreel.media.stats import FrameStats

pytestmark = pytest.mark.integration

SIZES = [(48, 32), (160, 120)]


def mujoco_envs() -> list[str]:
    """The newest version of every MuJoCo env Gymnasium registers."""
    newest: dict[str, gym.envs.registration.EnvSpec] = {}
    for spec in gym.registry.values():
        if isinstance(spec.entry_point, str) and spec.entry_point.startswith("gymnasium.envs.mujoco"):
            if spec.name not in newest or (spec.version or 0) > (newest[spec.name].version or 0):
                newest[spec.name] = spec
    return sorted(s.id for s in newest.values())


def test_every_gymnasium_mujoco_env_is_found():
    envs = mujoco_envs()
    assert {"InvertedPendulum-v5", "Pusher-v5", "HalfCheetah-v5", "Humanoid-v5"} <= set(envs), envs
    assert len(envs) >= 11


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("env_id", mujoco_envs())
def test_first_frames_of_gymnasium_envs_are_not_blank(env_id, size):
    width, height = size
    env = gym.make(env_id, render_mode="rgb_array", width=width, height=height)
    try:
        env.reset(seed=0)
        env.action_space.seed(0)
        stats = FrameStats(width, height)
        stats.update(env.render())
        for _ in range(3):
            env.step(env.action_space.sample())
            stats.update(env.render())
    finally:
        env.close()
    assert not stats.blank
    assert stats.warnings() == []


# A camera that looks up into the empty sky: nothing is in view, every pixel is the clear colour.
NOTHING_IN_VIEW = """<mujoco>
  <worldbody>
    <camera name="up" pos="0 0 5" xyaxes="1 0 0 0 -1 0"/>
    <body pos="0 0 1"><freejoint/><geom type="box" size=".2 .2 .2" rgba="1 0 0 1"/></body>
  </worldbody>
</mujoco>"""


def _request(run_id: str, *, fail_on_blank: bool) -> ev.SimRequested:
    return ev.SimRequested(run_id=run_id, scene=NOTHING_IN_VIEW, episodes=1, duration_s=0.4, policy="zero",
                           fail_on_blank=fail_on_blank,
                           render=ev.RenderSpec(width=64, height=48, fps=10, quality="fast", cameras=["up"]))


async def test_a_render_with_nothing_drawn_warns_and_fails_with_fail_on_blank(stack):
    client = await Client.connect(NatsSettings(url=stack.url))
    try:
        warned = await client.run(_request("blank-warns", fail_on_blank=False), timeout=120)
        failed = await client.run(_request("blank-fails", fail_on_blank=True), timeout=120)
    finally:
        await client.close()
    assert warned.ok, warned.error
    (ended,) = warned.state.episode_ends.values()
    assert ended.blank
    assert any("uniform fill (rgb(0, 0, 0))" in w for w in ended.warnings), ended.warnings
    assert failed.status == "failed" and failed.error_code == "blank_frames", (failed.status, failed.error)
    assert "nothing was drawn" in failed.error
