"""Keep rules on real parts (recorders' keep= and requests' outputs.keep): Gymnasium MuJoCo envs, nats-server, encoder, uploader.

Every episode is a candidate and streamed as usual; after each ends, the rule decides. Kept episodes
get their video files; discarded ones leave no video artifact and no staged file, only an
EpisodeDiscarded with the rule and the reason, while their telemetry and report are stored.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from urllib.parse import urlparse

import gymnasium as gym
import numpy as np
import pytest

from simreel.contract import events as ev
from simreel.contract import keep
from simreel.client import Client
from simreel.runtime.config import NatsSettings
from simreel.gym import RecordVideo
from simreel.gym.vector import RecordVideo as VectorRecordVideo

pytestmark = pytest.mark.integration

KW = dict(width=64, height=48, max_episode_steps=6)


def play(env, seeds) -> list[keep.Outcome]:
    """Random actions with a fixed seed; the outcomes the env itself gave."""
    env.action_space.seed(0)
    out = []
    for i, seed in enumerate(seeds):
        env.reset(seed=seed)
        total, n = 0.0, 0
        while True:
            _, r, terminated, truncated, _ = env.step(env.action_space.sample())
            total, n = total + float(r), n + 1
            if terminated or truncated:
                break
        out.append(keep.Outcome(index=i, seed=seed, length=n, episode_return=total, terminated=terminated,
                                truncated=truncated))
    env.close()
    return out


def local(url: str) -> Path:
    return Path(urlparse(url).path)


async def _replay(url: str, subject: str) -> list[ev.Event]:
    async with await Client.connect(NatsSettings(url=url)) as c:
        return [e async for e in c.bus.replay(subject)]


def replay(url: str, subject: str = "simreel.evt.>") -> list[ev.Event]:
    return asyncio.run(_replay(url, subject))


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_keep_failures_stores_only_the_failed_episodes(stack, tmp_path):
    folder = tmp_path / "videos"
    env = RecordVideo(gym.make("InvertedPendulum-v5", render_mode="rgb_array", **KW), str(folder),
                      keep=keep.failures(), nats_url=stack.url)
    outcomes = play(env, range(8))
    failed = [o.index for o in outcomes if o.terminated]
    others = [o.index for o in outcomes if not o.terminated]
    assert failed and others  # the seeds give both

    assert [v.episode for v in env.videos] == failed
    assert sorted(p.name for p in folder.glob("*.mp4")) == sorted(f"rl-video-episode-{i}.mp4" for i in failed)
    assert all(v.kept and v.reason == "failures: terminated" for v in env.videos)
    assert sorted(v.episode for v in env.discarded) == others
    for v in env.discarded:
        assert v.status == "discarded" and v.url is None and v.path is None and v.kept is False
        assert v.reason.startswith("failures: not terminated")
        rows = local(v.telemetry_url).read_text().splitlines()  # telemetry is stored all the same
        assert len(rows) == outcomes[v.episode].length + 1

    log = replay(stack.url)
    runs = {v.run_id: v for v in env.videos + env.discarded}
    discarded = [e for e in log if isinstance(e, ev.EpisodeDiscarded) and e.run_id in runs]
    assert sorted(e.candidate for e in discarded) == others
    for e in discarded:
        o = outcomes[e.candidate]
        assert e.rule == "failures" and e.steps == o.length and e.episode_return == o.episode_return
        assert not e.terminated and e.truncated
    gone = {e.run_id for e in discarded}
    stored = [e for e in log if isinstance(e, ev.ArtifactStored) and e.run_id in gone]
    assert sorted({a.kind for a in stored}) == ["report", "telemetry"]  # no video artifact
    assert not [e for e in log if isinstance(e, ev.VideoAvailable) and e.run_id in gone]
    assert len([e for e in log if isinstance(e, ev.VideoHeld) and e.run_id in runs]) == 8  # all were candidates
    staging = stack.data_dir / "staging"
    wait_until(lambda: not any(p.is_file() for r in runs for p in (staging / r).rglob("*")))


def test_worst_k_over_the_recorders_life_is_decided_at_close(stack, tmp_path):
    env = RecordVideo(gym.make("InvertedPendulum-v5", render_mode="rgb_array", **KW), str(tmp_path / "v"),
                      keep=keep.worst(2), nats_url=stack.url)
    outcomes = play(env, range(6))
    lowest = sorted(outcomes, key=lambda o: (o.episode_return, o.index))[:2]
    assert sorted(v.episode for v in env.videos) == sorted(o.index for o in lowest)
    assert len(env.discarded) == 4
    assert all(Path(v.path).is_file() for v in env.videos)


def test_wait_mid_training_reports_what_is_decided_and_leaves_the_held_for_later(stack, tmp_path):
    env = RecordVideo(gym.make("InvertedPendulum-v5", render_mode="rgb_array", **KW), str(tmp_path / "v"),
                      keep=keep.worst(1), nats_url=stack.url)
    env.action_space.seed(0)
    for seed in range(3):
        env.reset(seed=seed)
        while not any(env.step(env.action_space.sample())[2:4]):
            pass
    env.reset(seed=3)  # ends the third recording; the fourth episode runs on
    env.wait(120)
    # Two of the three ended candidates were pushed out of the worst 1 and are decided; one is held.
    assert env.videos == [] and len(env.discarded) == 2
    assert all(v.status == "discarded" and v.telemetry_url for v in env.discarded)
    env.close()
    assert len(env.videos) == 1 and len(env.discarded) == 3  # the fourth, cut by close, is a candidate too


def test_same_seeds_same_kept_set_and_identical_videos(stack, tmp_path):
    def once(name: str):
        env = RecordVideo(gym.make("InvertedPendulum-v5", render_mode="rgb_array", **KW), str(tmp_path / name),
                          keep=keep.failures() | keep.new_best(), nats_url=stack.url)
        play(env, range(6))
        return {v.episode: sha(Path(v.path)) for v in env.videos}

    first, second = once("a"), once("b")
    assert first and first == second


def test_a_callable_gets_the_outcome_with_the_final_info(stack, tmp_path):
    seen: list[keep.Outcome] = []

    def short(o: keep.Outcome) -> bool:
        seen.append(o)
        return o.length <= 4

    env = RecordVideo(gym.make("InvertedPendulum-v5", render_mode="rgb_array", **KW), str(tmp_path / "v"),
                      keep=short, episode_trigger=lambda e: e % 2 == 0, nats_url=stack.url)
    outcomes = play(env, range(6))
    assert [o.index for o in seen] == [0, 2, 4]  # the trigger still picks the candidates
    for o in seen:
        want = outcomes[o.index]
        assert (o.seed, o.length, o.episode_return, o.terminated) == (want.seed, want.length, want.episode_return,
                                                                       want.terminated)
        assert "reward_survive" in o.info
    assert [v.episode for v in env.videos] == [o.index for o in seen if o.length <= 4]


def test_vector_recorder_decides_per_sub_env(stack, tmp_path):
    envs = gym.make_vec("InvertedPendulum-v5", num_envs=2, vectorization_mode="sync", render_mode="rgb_array", **KW)
    envs = VectorRecordVideo(envs, str(tmp_path / "v"), per_env=True, keep=keep.best(1), nats_url=stack.url)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        envs.step(rng.uniform(-3, 3, (2, 1)).astype(np.float32))
    envs.close()
    kept = [v for v in envs.videos if v.kept]
    assert sorted(v.env for v in kept) == [0, 1]  # the best episode of each sub-env
    for sub in (0, 1):
        mine = [v for v in envs.videos + envs.discarded if v.env == sub]
        assert len(mine) >= 2 and sum(1 for v in mine if v.kept) == 1
        (best,) = [v for v in mine if v.kept]
        assert Path(best.path).name == f"rl-video-env-{sub}-episode-{best.episode}.mp4"
        assert all(not v.kept and v.path is None for v in mine if v is not best)


async def _run(url: str, req: ev.SimRequested):
    async with await Client.connect(NatsSettings(url=url)) as c:
        result = await c.run(req, timeout=240)
        return result, [e async for e in c.bus.replay(f"simreel.evt.*.*.{req.run_id}")]


def test_a_request_keeps_the_worst_episode_of_the_run(stack):
    req = ev.SimRequested(run_id=f"keep-{time.time_ns()}", scene="cartpole", episodes=4, duration_s=0.3,
                          policy="random", render=ev.RenderSpec(width=48, height=32, fps=10),
                          outputs=ev.OutputSpec(keep=keep.worst(1)))
    result, log = asyncio.run(_run(stack.url, req))
    assert result.ok, result.error
    ended = {e.episode: e for e in log if isinstance(e, ev.EpisodeEnded)}
    worst = min(ended.values(), key=lambda e: (e.episode_return, e.episode)).episode
    videos = [a for a in result.artifacts if a.kind == "video"]
    assert [a.episode for a in videos] == [worst] and Path(videos[0].path).is_file()
    discarded = [e for e in log if isinstance(e, ev.EpisodeDiscarded)]
    assert sorted(e.episode for e in discarded) == sorted(set(ended) - {worst})
    assert {a.kind for a in result.artifacts} == {"video", "report", "telemetry", "scene"}
    tel = next(a for a in result.artifacts if a.kind == "telemetry")
    rows = [json.loads(line) for line in Path(tel.path).read_text().splitlines()]
    assert sorted({r["episode"] for r in rows}) == [0, 1, 2, 3]  # every episode's telemetry
    staged = stack.data_dir / "staging" / req.run_id
    wait_until(lambda: not any(p.is_file() for p in staged.rglob("*")))


def test_vector_keep_callable_gets_each_sub_envs_own_outcome_and_final_info(stack, tmp_path):
    seen: list[tuple[int, keep.Outcome]] = []
    envs = gym.make_vec("InvertedPendulum-v5", num_envs=2, vectorization_mode="sync", render_mode="rgb_array", **KW)
    envs = VectorRecordVideo(envs, str(tmp_path / "v"), per_env=True, nats_url=stack.url,
                             keep=lambda o: seen.append(o) or o.terminated)
    envs.reset(seed=0)
    rng = np.random.default_rng(2)
    returns = np.zeros(2)
    ended: list[list[tuple[float, bool]]] = [[], []]
    for _ in range(16):
        _, r, term, trunc, _ = envs.step(rng.uniform(-3, 3, (2, 1)).astype(np.float32))
        returns += r
        for i in (0, 1):
            if term[i] or trunc[i]:
                ended[i].append((float(returns[i]), bool(term[i])))
                returns[i] = 0.0
    envs.close()
    for sub in (0, 1):
        mine = [v for v in envs.videos + envs.discarded if v.env == sub]
        assert len(mine) >= len(ended[sub]) >= 1
    complete = [o for o in seen if o.info]  # episodes that ended (the last one of each sub-env is cut by close)
    assert len(complete) == len(ended[0]) + len(ended[1])
    assert all("reward_survive" in o.info for o in complete)
    assert sorted((o.episode_return, o.terminated) for o in complete) == sorted(ended[0] + ended[1])
    assert envs.videos and all(v.kept and v.reason == "<lambda>: true" for v in envs.videos)
    assert all(not v.kept and v.reason == "<lambda>: false" for v in envs.discarded)


def test_sb3_recorder_decides_per_clip(stack, tmp_path):
    from stable_baselines3.common.env_util import make_vec_env

    from simreel.sb3 import VecVideoRecorder

    seen: list[keep.Outcome] = []

    def terminated(o: keep.Outcome) -> bool:
        seen.append(o)
        return o.terminated

    venv = make_vec_env("InvertedPendulum-v5", n_envs=2, seed=0,
                        env_kwargs={"render_mode": "rgb_array", "width": 64, "height": 48})
    env = VecVideoRecorder(venv, str(tmp_path / "v"), record_video_trigger=lambda s: s % 6 == 0, video_length=4,
                           keep=terminated, nats_url=stack.url)
    env.reset()
    rng = np.random.default_rng(1)
    for step in range(24):
        # calm for the first clips, then pushed over: some clips see a sub-env fall, some do not
        env.step(np.zeros((2, 1), np.float32) if step < 12 else rng.uniform(-3, 3, (2, 1)).astype(np.float32))
    env.close()
    assert [o.index for o in seen] == list(range(len(seen))) and len(seen) >= 3
    assert all(o.length == 4 and len(o.info["infos"]) == 2 for o in seen[:-1])
    fell = [o.index for o in seen if o.terminated]
    assert fell and len(fell) < len(seen)
    names = sorted(p.name for p in (tmp_path / "v").glob("*.mp4"))
    assert names == sorted(Path(v.path).name for v in env.videos) and len(env.videos) == len(fell)
    assert len(env.discarded) == len(seen) - len(fell)
