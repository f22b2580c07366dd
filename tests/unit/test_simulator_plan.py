"""The simulator's decisions before any rendering: limits, seeds, frame counts, and the outputs a request expects."""
import pytest

from simreel.contract import events as ev
from simreel.contract.outputs import expected_artifacts, video_outputs
from simreel.runtime.config import Limits
from simreel.services.simulator import plan


def test_limits_name_the_field_and_the_limit():
    req = ev.SimRequested(scene="cartpole", render=ev.RenderSpec(width=2000))
    with pytest.raises(plan.LimitExceeded) as info:
        plan.check_limits(req, Limits(max_width=1920))
    assert info.value.field == "render.width" and "1920" in str(info.value)
    plan.check_limits(ev.SimRequested(scene="cartpole"), Limits())


def test_seeds_default_to_consecutive_and_must_match_episodes():
    assert plan.episode_seeds(ev.SimRequested(scene="x", episodes=3, seed=7)) == [7, 8, 9]
    assert plan.episode_seeds(ev.SimRequested(scene="x", episodes=2, seeds=[5, 1])) == [5, 1]
    with pytest.raises(plan.LimitExceeded):
        plan.check_limits(ev.SimRequested(scene="x", episodes=2, seeds=[1]), Limits())


def test_frame_count_is_duration_times_fps_whatever_the_physics_step():
    assert plan.frame_count(2.0, None, 0.002, 30) == 60
    assert plan.frame_count(600.0, None, 0.002, 30) == 18000
    assert plan.frame_count(1.0, None, 0.003, 24) == 24


def test_expected_artifacts_counts_formats_layouts_scene_report_telemetry():
    req = ev.SimRequested(scene="x", episodes=3, outputs=ev.OutputSpec(formats=["mp4", "gif"], layout="both"))
    assert video_outputs(req) == 2 * (3 + 1)
    assert expected_artifacts(req) == 8 + 3
