"""Evaluation episodes of HalfCheetah recorded with simreel's drop-in RecordVideo.

The only change from a gymnasium script is the import: frames stream to the simreel bus while the
episode runs (no frame list in RAM, no encode in this loop), and each video comes with a
telemetry.jsonl (reward, action, terminated, truncated per frame) and a URL.

    python examples/record_halfcheetah.py --episodes 3 --steps 200
    SIMREEL_NATS_URL=nats://127.0.0.1:4222 python examples/record_halfcheetah.py   # a running stack

With no SIMREEL_NATS_URL, an embedded stack starts on the first recording and stops at close().
"""
from __future__ import annotations

import argparse

import gymnasium as gym

from simreel.gym import RecordVideo
from simreel.sim.gymenv import make_policy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--steps", type=int, default=200, help="steps per episode (the env's time limit)")
    p.add_argument("--every", type=int, default=1, help="record every n-th evaluation episode")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--policy", default="sine", choices=["sine", "random", "zero"],
                   help="stand-in for your trained policy")
    p.add_argument("--folder", default="videos")
    a = p.parse_args()

    env = gym.make("HalfCheetah-v5", render_mode="rgb_array", width=a.width, height=a.height,
                   max_episode_steps=a.steps)
    env = RecordVideo(env, a.folder, episode_trigger=lambda e: e % a.every == 0, name_prefix="halfcheetah-eval",
                      disable_logger=False)
    for episode in range(a.episodes):
        policy = make_policy(a.policy, env.action_space, seed=episode)
        obs, _ = env.reset(seed=episode)
        total, t, done = 0.0, 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs, t))
            total += float(reward)
            t += env.unwrapped.dt
            done = terminated or truncated
        print(f"episode {episode}: return {total:.1f}")
    env.close()  # waits until every video is stored

    for v in env.videos:
        print(f"{v['name']}: {v['frames']} frames → {v['path'] or v['url']}")
        print(f"    telemetry {v['telemetry_url']}")


if __name__ == "__main__":
    main()
