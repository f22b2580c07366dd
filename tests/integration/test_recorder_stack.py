"""The process's one embedded stack and live capture controls, on real processes.

Two wrappers in one process share one nats-server and one co-hosted encoder+uploader process; a
killed stack process is reported by the next step()/close() instead of a hang; a ui (here: a plain
publisher) steers a live recorder at episode boundaries and sees the effect as events.
"""
from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import gymnasium as gym
import msgspec
import pytest

from simreel.contract import events as ev
from simreel.stack import process_stack
from simreel.contract import subjects
from simreel.transport.bus import Bus
from simreel.runtime.config import NatsSettings
from simreel.gym import RecordVideo
from simreel.recorder import RecorderError

pytestmark = pytest.mark.integration

SIZE = dict(width=96, height=64)


def make(tmp: Path, name: str, **kw) -> RecordVideo:
    env = gym.make("InvertedPendulum-v5", render_mode="rgb_array", max_episode_steps=12, **SIZE)
    return RecordVideo(env, str(tmp / name), **kw)


def episode(env: gym.Env, seed: int = 0) -> None:
    env.reset(seed=seed)
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample() * 0)
        done = terminated or truncated


def children(pattern: str) -> list[int]:
    """Our own child processes whose command line contains `pattern`."""
    me, out = os.getpid(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me and pattern in cmd:
            out.append(int(pid))
    return out


def one_child(pattern: str, timeout: float) -> int:
    """Wait for exactly one child process matching `pattern` (a condition, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not (found := children(pattern)) and time.monotonic() < deadline:
        time.sleep(0.1)
    [pid] = found
    return pid


@pytest.fixture
def embedded(monkeypatch):
    monkeypatch.delenv("SIMREEL_NATS_URL", raising=False)
    assert process_stack.wait_stopped(60), "a stack of an earlier test is still stopping"
    yield
    assert process_stack.wait_stopped(60)


def test_two_wrappers_share_one_stack_with_cohosted_services(tmp_path, embedded):
    before = process_stack.starts()
    a, b = make(tmp_path, "a", episode_trigger=lambda e: True), make(tmp_path, "b", episode_trigger=lambda e: True)
    episode(a), episode(b), episode(a)
    stack = process_stack.running()
    assert stack is not None and process_stack.starts() == before + 1
    assert len(children("nats-server")) == 1
    [services] = children("simreel.cli serve")
    assert "encoder uploader" in Path(f"/proc/{services}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert len(children("simreel.services.")) == 0  # no separate service processes
    a.close()
    assert process_stack.running() is stack  # b still uses it
    b.close()
    assert [v["status"] for v in a.videos] == ["completed", "completed"], a.videos
    assert [v["name"] for v in b.videos] == ["rl-video-episode-0"]
    assert (tmp_path / "a" / "rl-video-episode-1.mp4").stat().st_size > 0
    assert (tmp_path / "b" / "rl-video-episode-0.mp4").stat().st_size > 0


def test_a_killed_stack_process_is_reported_by_step_or_close_not_a_hang(tmp_path, embedded):
    env = make(tmp_path, "k", episode_trigger=lambda e: True, timeout=120)
    episode(env)
    # The recorder thread starts the stack in the background: a short episode can end before it is up.
    services = one_child("simreel.cli serve", timeout=60)
    os.kill(services, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(RecorderError, match=r"encoder \+ uploader process .* exited with code -9"):
        for _ in range(200):  # the death is noticed within a fraction of a second
            episode(env)
    with pytest.raises(Exception, match="exited with code -9"):
        env.close()
    assert time.monotonic() - t0 < 60


async def _control(url: str, recorder_id: str, **fields) -> ev.CaptureControlRequested:
    bus = await Bus.connect(NatsSettings(url=url))
    try:
        req = ev.CaptureControlRequested(run_id=recorder_id, requested_by="test", **fields)
        await bus.publish(req)
        return req
    finally:
        await bus.close()


async def _events(url: str, recorder_id: str, until: type, count: int = 1) -> list[ev.Event]:
    bus = await Bus.connect(NatsSettings(url=url))
    seen: list[ev.Event] = []
    try:
        async for e in bus.follow(f"simreel.evt.*.*.{recorder_id}"):
            seen.append(e)
            if sum(isinstance(x, until) for x in seen) >= count:
                return seen
    finally:
        await bus.close()
    return seen


def _wait_for_control(env: RecordVideo, request: ev.Event) -> None:
    """Until `request` is queued for the next episode boundary (not merely some control: a request
    sent just before it may arrive first)."""
    deadline = time.monotonic() + 30
    while not any(c.event_id == request.event_id for c in env.pending_controls):
        assert time.monotonic() < deadline, "the control request never reached the recorder"
        time.sleep(0.02)


def test_a_ui_records_the_next_episode_and_changes_the_cadence(tmp_path, embedded):
    env = make(tmp_path, "live", episode_trigger=lambda e: False)
    episode(env)  # episode 0: not recorded
    assert env.recorder.connected(60)
    url, rid = env.recorder.url, env.recorder_id
    req = asyncio.run(_control(url, rid, action="record_next"))
    _wait_for_control(env, req)
    episode(env)  # episode 1: recorded because of the request
    episode(env)  # episode 2: the trigger again
    bad = asyncio.run(_control(url, rid, action="every"))  # no number: refused with a reason
    every = asyncio.run(_control(url, rid, action="every", every=2))
    _wait_for_control(env, every)
    for _ in range(3):
        episode(env)  # episodes 3 (recorded), 4, 5 (recorded)
    hold = process_stack.acquire(tmp_path, services=("encoder", "uploader"), env=os.environ)  # read the log after
    try:
        env.close()
        log = asyncio.run(_events(url, rid, ev.RecorderAnnounced, count=8))
    finally:
        hold.release()

    assert [v["name"] for v in env.videos] == ["rl-video-episode-1", "rl-video-episode-3", "rl-video-episode-5"]
    assert log[-1] == ev.RecorderAnnounced(**{**msgspec.structs.asdict(log[-1]), "state": "closed"})
    applied = [e for e in log if isinstance(e, ev.CaptureControlApplied)]
    assert [(a.request_event_id, a.action, a.episode) for a in applied] == [
        (req.event_id, "record_next", 1), (every.event_id, "every", 3)]
    [dead] = [e for e in log if isinstance(e, ev.DeadLettered)]
    assert "needs a number" in dead.reason and bad.event_id in dead.payload_preview
    announced = [e for e in log if isinstance(e, ev.RecorderAnnounced)]
    assert announced[0].trigger == "custom episode_trigger" and announced[0].state == "running"
    assert any(a.cadence == 2 and a.trigger == "every 2 episodes" for a in announced)
    assert subjects.subject_for(announced[0]) == f"simreel.evt.recorder.announced.{rid}"
