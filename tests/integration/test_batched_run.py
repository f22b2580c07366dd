"""A batched run on a real stack: render.engine "mjwarp" runs the episodes as parallel worlds (CPU
device) and every episode still becomes its own MP4 with its own telemetry, through the unchanged
encoder and uploader."""
from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from simreel.contract import events as ev

from tests.conftest import MJWARP_SCENE, MJWARP_SIZE
from tests.support.runs import run_request

pytestmark = pytest.mark.integration


def _frames(path: str) -> tuple[int, int, int]:
    with av.open(path) as c:
        s = c.streams.video[0]
        return sum(1 for _ in c.decode(s)), s.codec_context.width, s.codec_context.height


async def test_four_episodes_as_parallel_worlds_become_four_videos(stack, mjwarp_warm):
    """45 frames an episode are more than one FrameBatch holds (32), so the four episodes' messages
    interleave in the stream; the concatenated video still gets them one after the other."""
    w, h = MJWARP_SIZE
    n = 45
    req = ev.SimRequested(scene=MJWARP_SCENE, episodes=4, seed=20, duration_s=3.0, policy="random",
                          render=ev.RenderSpec(width=w, height=h, fps=15, quality="fast", engine="mjwarp",
                                               engine_options={"device": "cpu"}),
                          outputs=ev.OutputSpec(layout="both"))
    result, seen = await run_request(stack.url, req, timeout=600)
    assert result.status == "completed", (result.error, stack.logs()[-3000:])

    started = next(e for e in seen if isinstance(e, ev.SimStarted))
    assert (started.engine, started.worlds, started.gl_backend) == ("mjwarp", 4, "cpu")
    ended = sorted((e for e in seen if isinstance(e, ev.EpisodeEnded)), key=lambda e: e.episode)
    assert [(e.episode, e.seed, e.frames) for e in ended] == [(i, 20 + i, n) for i in range(4)]

    videos = sorted((a for a in result.artifacts if a.kind == "video" and a.episode is not None),
                    key=lambda a: a.episode)
    assert [a.episode for a in videos] == [0, 1, 2, 3]
    for a in videos:
        assert _frames(a.path) == (n, w, h)
    assert len({a.sha256 for a in videos}) == 4  # one seed per world: four different episodes
    (concat,) = [a for a in result.artifacts if a.kind == "video" and a.episode is None]
    assert _frames(concat.path) == (4 * n, w, h)

    by_kind = {a.kind: a for a in result.artifacts}
    report = json.loads(Path(by_kind["report"].path).read_text())
    assert report["engine"]["engine"] == "mjwarp" and report["engine"]["worlds"] == 4
    assert report["engine"]["warmup_s"] >= 0 and report["engine"]["device"] == "cpu"
    assert [e["seed"] for e in report["episodes"]] == [20, 21, 22, 23]
    rows = [json.loads(r) for r in Path(by_kind["telemetry"].path).read_text().splitlines()]
    for episode in range(4):
        mine = [r for r in rows if r["episode"] == episode]
        assert [r["frame"] for r in mine] == list(range(n))
        assert all(r["t"] == pytest.approx(r["frame"] / 15, abs=1e-12) for r in mine)  # exact k/fps per world
        assert [r["concat_frame"] for r in mine] == list(range(episode * n, (episode + 1) * n))
        assert all(len(r["qpos"]) == 2 and len(r["qvel"]) == 2 for r in mine)  # each world's own state
    firsts = [next(r for r in rows if r["episode"] == e)["qpos"] for e in range(4)]
    assert len({tuple(q) for q in firsts}) == 4  # seeded start states differ per world


async def test_a_request_cannot_name_a_module_as_engine(stack):
    import msgspec

    with pytest.raises(msgspec.ValidationError, match="engine"):
        msgspec.convert({"scene": "cartpole", "render": {"engine": "os:system"}}, ev.SimRequested)
    req = ev.SimRequested(scene="cartpole", duration_s=0.2,
                          render=ev.RenderSpec(width=32, height=24, fps=10, engine="no_such_engine"))
    result, _ = await run_request(stack.url, req)
    assert result.status == "failed" and result.error_code == "render_failed"
    assert "no_such_engine" in result.error and "unavailable" in result.error
