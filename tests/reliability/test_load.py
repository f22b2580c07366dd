"""20 concurrent small runs on the embedded stack with 2 simulator and 2 encoder replicas: all complete,
and a replay of EVENTS holds exactly the expected events: nothing lost, nothing duplicated."""
from __future__ import annotations

import asyncio
import collections
import time

import pytest

from simreel.contract import events as ev
from simreel.runtime.config import NatsSettings

from tests.support.artifacts import expected_keys, mp4_frame_count
from tests.support.eventlog import replay, submit, wait_result
from tests.support.runs import request

pytestmark = pytest.mark.integration

RUNS, EPISODES, FPS, DURATION = 20, 2, 10, 0.5


def _expected(req: ev.SimRequested) -> collections.Counter:
    r = req.run_id
    c = collections.Counter({(r, "SimRequested", None): 1, (r, "SimStarted", 1): 1, (r, "SimCompleted", 1): 1,
                             (r, "SceneSaved", 1): 1, (r, "TelemetryStaged", 1): 1})
    for e in range(req.episodes):
        c[(r, "EpisodeEnded", e)] += 1
        c[(r, "VideoAvailable", e)] += 1
    for k in expected_keys(req):
        c[(r, "ArtifactStored", k)] += 1
    return c


def _key(e: ev.Event):
    if isinstance(e, (ev.EpisodeEnded, ev.VideoAvailable)):
        return (e.run_id, type(e).__name__, e.episode)
    if isinstance(e, ev.ArtifactStored):
        return (e.run_id, type(e).__name__, e.key)
    return (e.run_id, type(e).__name__, getattr(e, "attempt", None))


async def test_twenty_concurrent_runs_nothing_lost_or_duplicated(make_stack):
    stack = make_stack(env={"SIMREEL_ACK_WAIT_S": "30"}, replicas={"simulator": 2, "encoder": 2})
    nats = NatsSettings(url=stack.url)
    reqs = [request(f"load-{i:02d}", episodes=EPISODES, duration_s=DURATION, fps=FPS, seed=i) for i in range(RUNS)]
    t0 = time.monotonic()
    await submit(nats, *reqs)
    results = await asyncio.gather(*(wait_result(nats, r.run_id, timeout=150) for r in reqs))
    wall = time.monotonic() - t0
    failed = [(r.run_id, r.error) for r in results if not r.ok]
    assert not failed, failed

    events = await replay(nats)
    seen = collections.Counter(_key(e) for e in events)
    expected = sum((_expected(r) for r in reqs), collections.Counter())
    missing, extra = expected - seen, seen - expected
    assert not missing and not extra, (f"missing: {sorted(missing.items())[:10]}", f"extra: {sorted(extra.items())[:10]}")
    assert len(events) == sum(expected.values()) == RUNS * (5 + 2 * EPISODES + EPISODES + 3)
    # Every stored video decodes to exactly its frames.
    for res in results:
        for a in res.artifacts:
            if a.kind == "video":
                assert mp4_frame_count(a.path) == round(DURATION * FPS)
    # Both encoder replicas shared the work.
    for i in range(2):
        assert "encode_started" in (stack.log_dir / f"encoder-{i}.log").read_text()
    print(f"{RUNS} runs, {len(events)} events checked, wall {wall:.1f}s")
