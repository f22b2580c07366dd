"""`scene="gymnasium:<EnvId>"` through the real stack: the env's own fps, seeds via reset(seed=...)."""
from __future__ import annotations

import json

import av
import pytest

from simreel.contract import events as ev

from tests.support.runs import run_request

pytestmark = pytest.mark.integration


async def test_gymnasium_env_as_a_scene(stack):
    req = ev.SimRequested(scene="gymnasium:Reacher-v5", episodes=2, seed=4, max_steps=10, policy="random",
                          render=ev.RenderSpec(width=96, height=64))
    result, seen = await run_request(stack.url, req)
    assert result.status == "completed", result.error
    started = next(e for e in seen if isinstance(e, ev.SimStarted))
    assert started.fps == 50 and started.scene.startswith("gymnasium:Reacher")  # the env's render_fps
    ended = [e for e in seen if isinstance(e, ev.EpisodeEnded)]
    assert [e.seed for e in ended] == [4, 5]
    assert not any(a.kind == "scene" for a in result.artifacts)  # no MJCF of ours to store
    videos = sorted((a for a in result.artifacts if a.kind == "video"), key=lambda a: a.episode)
    for a, e in zip(videos, ended):
        with av.open(a.path) as c:
            assert sum(1 for _ in c.decode(video=0)) == e.frames
    assert videos[0].sha256 != videos[1].sha256
    # Richer telemetry: each frame's flattened observation (Reacher-v5: 10 numbers), named in the first row.
    assert started.telemetry_names["obs"] == [str(i) for i in range(10)]
    tel = next(a for a in result.artifacts if a.kind == "telemetry")
    rows = [json.loads(x) for x in open(tel.path).read().splitlines()]
    assert len(rows[0]["names"]["obs"]) == 10
    assert len(rows) == sum(e.frames for e in ended) and all(len(r["obs"]) == 10 for r in rows)
    assert rows[0]["obs"] != rows[1]["obs"]


async def test_gymnasium_scene_may_not_read_files(stack):
    req = ev.SimRequested(scene="gymnasium:Reacher-v5", env_kwargs={"xml_file": "/etc/passwd"}, max_steps=5)
    result, seen = await run_request(stack.url, req)
    failed = next(e for e in seen if isinstance(e, ev.SimFailed))
    assert failed.code == "scene_forbidden" and "xml_file" in failed.message
