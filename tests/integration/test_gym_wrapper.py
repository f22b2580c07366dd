"""simreel.gym.RecordVideo on real parts: Gymnasium MuJoCo envs, nats-server, encoder, uploader.

Given the same env, seeds and triggers as gymnasium's RecordVideo, the same video files appear in
video_folder, they decode with the same frame counts, each has a telemetry row per frame, and the
env process does not hold frames in memory while recording.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlparse

import av
import gymnasium as gym
import pytest

from simreel.stack import process_stack
from simreel.gym import RecordVideo

pytestmark = pytest.mark.integration

SIZE = dict(width=160, height=120)


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


def play(env: gym.Env, seeds: list[int], action_seed: int = 0) -> None:
    env.action_space.seed(action_seed)
    for seed in seeds:
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    env.close()


def videos_in(folder: Path) -> dict[str, int]:
    return {p.name: decoded_frames(p) for p in sorted(folder.glob("*.mp4"))}


def local(url: str) -> Path:
    assert url.startswith("file://"), url
    return Path(urlparse(url).path)


class GymnasiumRecordVideo(gym.wrappers.RecordVideo):
    """gymnasium's wrapper, writing its files as usual, noting how many frames each video captured."""

    captured: dict[str, int]

    def stop_recording(self) -> None:
        if self.recorded_frames:
            self.captured = getattr(self, "captured", {})
            self.captured[f"{self._video_name}.mp4"] = len(self.recorded_frames)
        super().stop_recording()


@pytest.mark.parametrize("triggers", [
    dict(),  # gymnasium's default: capped cubic schedule → episodes 0, 1, 8
    dict(step_trigger=lambda s: s % 20 == 0, video_length=8),
], ids=["default-episode-trigger", "step-trigger-clips"])
def test_same_files_and_frame_counts_as_gymnasium(stack, tmp_path, triggers):
    import moviepy.video.io.ImageSequenceClip  # noqa: F401 - gymnasium's RecordVideo writes with it (test extras)
    seeds = list(range(10))
    theirs = GymnasiumRecordVideo(gym.make("InvertedDoublePendulum-v5", render_mode="rgb_array", **SIZE),
                                  str(tmp_path / "gymnasium"), **triggers)
    play(theirs, seeds)
    ours = RecordVideo(gym.make("InvertedDoublePendulum-v5", render_mode="rgb_array", **SIZE),
                       str(tmp_path / "simreel"), nats_url=stack.url, **triggers)
    play(ours, seeds)

    their_files, our_files = videos_in(tmp_path / "gymnasium"), videos_in(tmp_path / "simreel")
    assert len(their_files) >= 3
    assert sorted(our_files) == sorted(their_files) == sorted(theirs.captured)
    # Every frame gymnasium captured is in our file. moviepy (gymnasium's writer) drops the last frame
    # of some lengths (float rounding of n/fps: 8 frames at 20 fps decode as 7), so its files may be one short.
    assert our_files == theirs.captured
    assert all(theirs.captured[n] - their_files[n] in (0, 1) for n in their_files)
    assert sorted(Path(v["path"]).name for v in ours.videos) == sorted(our_files)
    assert all(v["status"] == "completed" for v in ours.videos)


def test_videos_decode_with_a_telemetry_row_per_frame(stack, tmp_path):
    env = RecordVideo(gym.make("Reacher-v5", render_mode="rgb_array", max_episode_steps=40, **SIZE),
                      str(tmp_path / "videos"), episode_trigger=lambda e: e in (0, 2), name_prefix="eval",
                      nats_url=stack.url)
    play(env, [5, 6, 7])

    assert [v["name"] for v in env.videos] == ["eval-episode-0", "eval-episode-2"]
    for v in env.videos:
        assert v["status"] == "completed" and v["frames"] == 41  # the reset frame + one per step
        path = Path(v["path"])
        assert path.parent == tmp_path / "videos" and decoded_frames(path) == 41
        assert path.stat().st_ino == local(v["url"]).stat().st_ino  # linked, not copied
        rows = [json.loads(line) for line in local(v["telemetry_url"]).read_text().splitlines()]
        assert len(rows) == 41
        assert [r["frame"] for r in rows] == list(range(41)) and [r["step"] for r in rows] == list(range(41))
        assert rows[0]["reset"] and rows[0]["action"] is None
        assert all(len(r["action"]) == 2 and isinstance(r["reward"], float) for r in rows[1:])
        assert rows[-1]["truncated"] and rows[-1]["env_episode"] == v["episode"]
        report = json.loads(local(v["report_url"]).read_text())
        assert report["gymnasium"]["env_id"] == "Reacher-v5" and report["gymnasium"]["video"] == v["name"]
        assert report["render"] == {"width": 160, "height": 120, "fps": 50, "cameras": []}
        assert report["episodes"][0]["steps"] == 40 and report["episodes"][0]["truncated"]
        assert v["store_latency_s"] is not None and v["store_latency_s"] < 30


# Runs in a fresh interpreter so VmHWM (peak RSS) measures only this recording.
_RSS_PROBE = textwrap.dedent("""
    import json, sys
    import gymnasium as gym
    from simreel.gym import RecordVideo

    def hwm_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    n, folder = int(sys.argv[1]), sys.argv[2]
    env = RecordVideo(gym.make("Reacher-v5", render_mode="rgb_array", width=160, height=120,
                               max_episode_steps=n), folder, episode_trigger=lambda e: True)
    env.action_space.seed(0)
    env.reset(seed=0)  # a short warm-up video: GL context, NATS connection, recorder thread
    for _ in range(20):
        env.step(env.action_space.sample())
    env.reset(seed=1)
    env.wait(60)
    before = hwm_mb()
    done = False
    while not done:
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        done = terminated or truncated
    env.close()
    print(json.dumps({"growth_mb": hwm_mb() - before, "frames": [v["frames"] for v in env.videos]}))
""")


def _peak_growth(stack, tmp_path: Path, frames: int) -> float:
    env = {**os.environ, "SIMREEL_NATS_URL": stack.url, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    out = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(frames), str(tmp_path / f"rss-{frames}")], env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["frames"] == [21, frames + 1]
    return result["growth_mb"]


def test_memory_stays_flat_however_long_the_video(stack, tmp_path):
    short = _peak_growth(stack, tmp_path, 200)
    long = _peak_growth(stack, tmp_path, 2000)
    # A frame list would hold 1,800 more frames of 160x120x3 = 104 MB; the recorder's bounded queue
    # and in-flight window do not grow with the video.
    print(f"peak RSS growth: {short:.1f} MB for 200 frames, {long:.1f} MB for 2000 frames")
    assert long - short < 40, (short, long)


def test_embedded_stack_when_no_bus_is_configured(tmp_path, monkeypatch):
    monkeypatch.delenv("SIMREEL_NATS_URL", raising=False)
    env = RecordVideo(gym.make("InvertedDoublePendulum-v5", render_mode="rgb_array", max_episode_steps=30, **SIZE),
                      str(tmp_path / "videos"), episode_trigger=lambda e: e == 0)
    play(env, [3])

    [video] = env.videos
    assert video["status"] == "completed", video
    assert Path(video["path"]) == tmp_path / "videos" / "rl-video-episode-0.mp4"
    assert decoded_frames(Path(video["path"])) == video["frames"]
    assert local(video["url"]).is_relative_to(tmp_path / "videos" / ".simreel")
    host, port = urlparse(env.recorder.url).hostname, urlparse(env.recorder.url).port
    assert process_stack.wait_stopped(60)  # close() returned first; the stack stops behind it
    with pytest.raises(OSError):  # the embedded nats-server was stopped after close()
        socket.create_connection((host, port), timeout=1).close()


async def test_run_recorder_publishes_a_multi_episode_run(stack):
    """The engine under the wrapper, used directly: any frame source becomes stored videos."""
    import numpy as np

    from simreel.contract import events as ev
    from simreel.transport.bus import Bus
    from simreel.client import Client
    from simreel.runtime.config import NatsSettings
    from simreel.recorder import RunRecorder

    bus = await Bus.connect(NatsSettings(url=stack.url))
    try:
        rec = RunRecorder(bus, run_id="recorder-direct-1", width=64, height=48, fps=10, episodes=2,
                          outputs=ev.OutputSpec(layout="both"), scene="synthetic", report={"source_name": "test"})
        await rec.start()
        for episode in range(2):
            for k in range(10):
                await rec.add_frame(np.full((48, 64, 3), 20 * k + episode, np.uint8), {"k": k})
            await rec.end_episode(seed=episode, steps=9, episode_return=1.5, terminated=episode == 1)
        done = await rec.complete()
        assert done.expected_artifacts == 5  # 2 episode videos + all.mp4 + report + telemetry; no scene.xml
        result = await Client(bus).wait("recorder-direct-1", timeout=60)
    finally:
        await bus.close()
    assert result.ok, result.error
    assert sorted((a.kind, -1 if a.episode is None else a.episode) for a in result.artifacts) == [
        ("report", -1), ("telemetry", -1), ("video", -1), ("video", 0), ("video", 1)]
    for a in result.artifacts:
        if a.kind == "video":
            assert decoded_frames(Path(a.path)) == (20 if a.episode is None else 10)
    rows = [json.loads(x) for x in local(next(a.url for a in result.artifacts if a.kind == "telemetry"))
            .read_text().splitlines()]
    assert len(rows) == 20 and rows[10]["episode"] == 1 and rows[10]["k"] == 0 and rows[10]["concat_frame"] == 10
    report = json.loads(Path(next(a.path for a in result.artifacts if a.kind == "report")).read_text())
    assert report["source_name"] == "test" and [e["terminated"] for e in report["episodes"]] == [False, True]
