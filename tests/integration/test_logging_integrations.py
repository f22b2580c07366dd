"""Videos reach Weights & Biases (offline) and TensorBoard as they are stored, from the recorder's
thread: the real libraries, their real files."""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

from simreel.stack import process_stack
from simreel.gym import RecordVideo
from simreel.integrations import every, tensorboard_logger, wandb_logger

pytestmark = pytest.mark.integration


def test_each_stored_video_is_logged_to_wandb_and_tensorboard(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="test extras install wandb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    monkeypatch.delenv("SIMREEL_NATS_URL", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(project="simreel-test", mode="offline", dir=str(tmp_path))
    writer = SummaryWriter(str(tmp_path / "tb"))
    seen = []
    env = gym.make("InvertedPendulum-v5", render_mode="rgb_array", max_episode_steps=10, width=64, height=48)
    env = RecordVideo(env, str(tmp_path / "videos"), episode_trigger=lambda e: e < 2,
                      on_video=every(wandb_logger(run), tensorboard_logger(writer), seen.append))
    for seed in range(3):
        env.reset(seed=seed)
        done = False
        while not done:
            *_, terminated, truncated, _ = env.step(env.action_space.sample() * 0)
            done = terminated or truncated
    env.close()
    writer.close()
    run.finish()
    assert process_stack.wait_stopped(60)

    assert sorted(v["name"] for v in seen) == ["rl-video-episode-0", "rl-video-episode-1"]
    logged = sorted(p.name for p in Path(run.dir).rglob("*.mp4"))
    assert len(logged) == 2, logged
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["videos/rl-video-episode-0", "videos/rl-video-episode-1"]
    [image] = events.Images("videos/rl-video-episode-1")
    assert image.step == 1 and image.encoded_image_string[:3] == b"GIF"
