"""simreel's vector and SB3 recorders side by side with the real Gymnasium and Stable-Baselines3 classes.

Same env, seeds and triggers: the same files appear, made of as many frames as the env rendered
(counted by decoding), with one difference on purpose — with same-step autoreset Gymnasium drops each
episode's final frame and simreel keeps it. Per-env videos come from Sync and Async vector envs.
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import av
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from simreel.stack import process_stack
from simreel.gym.vector import KeepFinalFrame
from simreel.gym.vector import RecordVideo as SimreelVectorRecordVideo

pytestmark = pytest.mark.integration

STEPS = 8  # every episode is truncated after STEPS steps (zero actions keep the pendulum up)
KW = dict(width=64, height=48, max_episode_steps=STEPS)


def frames_of(path: Path) -> tuple[int, tuple[int, int]]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sum(1 for _ in c.decode(s)), (s.codec_context.width, s.codec_context.height)


def videos(folder: Path) -> dict[str, tuple[int, tuple[int, int]]]:
    return {p.name: frames_of(p) for p in sorted(folder.glob("*.mp4"))}


def make_vec(n: int, mode: AutoresetMode, vectorization: str = "sync", wrappers=None) -> gym.vector.VectorEnv:
    vector_kwargs = {"autoreset_mode": mode}
    if vectorization == "async":
        # Forked workers inherit this process's GL state (earlier tests rendered here) and hang in EGL.
        vector_kwargs["context"] = "spawn"
    return gym.make_vec("InvertedPendulum-v5", num_envs=n, vectorization_mode=vectorization, render_mode="rgb_array",
                        vector_kwargs=vector_kwargs, wrappers=wrappers, **KW)


def drive(envs, steps: int) -> None:
    envs.reset(seed=0)
    for _ in range(steps):
        envs.step(np.zeros((envs.num_envs, 1), np.float32))
    envs.close()


class GymnasiumVectorRecordVideo(gym.wrappers.vector.RecordVideo):
    """Gymnasium's wrapper, writing its files as usual, noting how many frames each video captured
    (moviepy's writer may add a frame while encoding, so its files are not the reference count)."""

    captured: dict[str, int]

    def stop_recording(self) -> None:
        if self.recorded_frames:
            self.captured = getattr(self, "captured", {})
            self.captured[f"{self._video_name}.mp4"] = len(self.recorded_frames)
        super().stop_recording()


@pytest.fixture
def embedded(monkeypatch):
    monkeypatch.delenv("SIMREEL_NATS_URL", raising=False)
    yield
    assert process_stack.wait_stopped(60)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP], ids=["next-step", "same-step"])
def test_grid_videos_match_gymnasiums_vector_record_video(tmp_path, embedded, mode):
    trig = dict(episode_trigger=lambda e: e % 2 == 0, video_aspect_ratio=(16, 9))
    theirs = GymnasiumVectorRecordVideo(make_vec(3, mode), str(tmp_path / "gymnasium"), **trig)
    drive(theirs, 3 * STEPS + 2)
    ours = SimreelVectorRecordVideo(make_vec(3, mode), str(tmp_path / "simreel"), **trig)
    drive(ours, 3 * STEPS + 2)

    their, our = videos(tmp_path / "gymnasium"), videos(tmp_path / "simreel")
    assert set(our) == set(their) == {"rl-video-episode-0.mp4", "rl-video-episode-2.mp4"}
    assert our["rl-video-episode-0.mp4"][1] == their["rl-video-episode-0.mp4"][1] == (3 * 64, 48)  # 1×3 grid
    # Reset frame + STEPS steps; Gymnasium loses the last one in same-step mode, simreel keeps it.
    for name in ("rl-video-episode-0.mp4", "rl-video-episode-2.mp4"):
        assert our[name][0] == STEPS + 1
        assert theirs.captured[name] == STEPS + (0 if mode == AutoresetMode.SAME_STEP else 1)
    assert [v["status"] for v in ours.videos] == ["completed", "completed"]


@pytest.mark.parametrize("vectorization, mode", [
    ("sync", AutoresetMode.NEXT_STEP), ("sync", AutoresetMode.SAME_STEP),
    ("async", AutoresetMode.NEXT_STEP), ("async", AutoresetMode.SAME_STEP),
], ids=["sync-next-step", "sync-same-step", "async-next-step", "async-same-step"])
def test_one_video_per_sub_env_episode_with_its_telemetry(tmp_path, embedded, vectorization, mode):
    wrappers = [KeepFinalFrame] if vectorization == "async" else None  # Sync sub-envs are wrapped for us
    envs = SimreelVectorRecordVideo(make_vec(2, mode, vectorization, wrappers), str(tmp_path),
                                    per_env=True, episode_trigger=lambda k: k < 2)
    drive(envs, 2 * STEPS + 1)

    files = videos(tmp_path)
    assert set(files) == {f"rl-video-env-{i}-episode-{k}.mp4" for i in (0, 1) for k in (0, 1)}
    for i in (0, 1):
        assert files[f"rl-video-env-{i}-episode-0.mp4"] == (STEPS + 1, (64, 48))  # final frame kept
    by_name = {v["name"]: v for v in envs.videos}
    v = by_name["rl-video-env-1-episode-0"]
    rows = [json.loads(line) for line in Path(urlparse(v["telemetry_url"]).path).read_text().splitlines()]
    rows = [r for r in rows if "frame" in r or "reward" in r]
    assert len(rows) == STEPS + 1 == v["frames"]
    assert rows[0]["reset"] is True and rows[-1]["truncated"] is True and rows[-1]["reward"] == 1.0
    assert all(len(r["action"]) == 1 for r in rows[1:])


def test_chosen_sub_envs_only(tmp_path, embedded):
    envs = SimreelVectorRecordVideo(make_vec(3, AutoresetMode.NEXT_STEP), str(tmp_path), per_env=True, envs=[1],
                                    episode_trigger=lambda k: k == 0)
    drive(envs, STEPS + 1)
    assert set(videos(tmp_path)) == {"rl-video-env-1-episode-0.mp4"}
    with pytest.raises(ValueError, match="distinct sub-env indices"):
        SimreelVectorRecordVideo(make_vec(2, AutoresetMode.NEXT_STEP), str(tmp_path / "x"), envs=[2])


def test_sb3_vec_video_recorder_matches_stable_baselines3(tmp_path, embedded):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecVideoRecorder

    from simreel.sb3 import VecVideoRecorder as SimreelVecVideoRecorder

    def venv():
        return make_vec_env("InvertedPendulum-v5", n_envs=2, seed=0,
                            env_kwargs={"render_mode": "rgb_array", "width": 64, "height": 48})

    args = dict(record_video_trigger=lambda s: s % 7 == 0, video_length=5)
    for cls, folder in ((VecVideoRecorder, "sb3"), (SimreelVecVideoRecorder, "simreel")):
        env = cls(venv(), str(tmp_path / folder), **args)
        env.reset()
        for _ in range(20):
            env.step(np.zeros((2, 1), np.float32))
        env.close()
    their, our = videos(tmp_path / "sb3"), videos(tmp_path / "simreel")
    assert our == their
    assert set(our) == {"rl-video-step-0-to-step-5.mp4", "rl-video-step-7-to-step-12.mp4",
                        "rl-video-step-14-to-step-19.mp4"}
    assert our["rl-video-step-0-to-step-5.mp4"][0] == 6
