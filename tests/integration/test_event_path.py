"""The whole event path on real parts: nats-server, MuJoCo headless rendering, PyAV, local store.

Given a SimRequested, these events come out, and the stored files decode to what was asked for.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import av
import pytest

from simreel.contract import events as ev
from simreel.client import Client
from simreel.runtime.config import NatsSettings

from tests.support.runs import run_request, small_request

pytestmark = pytest.mark.integration


def _decode_frames(path: str) -> tuple[int, float, int, int]:
    with av.open(path) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        duration = float(c.duration / av.time_base) if c.duration else float(s.duration * s.time_base)
        return n, duration, s.codec_context.width, s.codec_context.height


async def test_request_becomes_stored_mp4s(stack):
    req = small_request(episodes=2, duration_s=1.0, seed=3)
    result, seen = await run_request(stack.url, req)
    assert result.status == "completed", (result.error, stack.logs()[-3000:])

    kinds = [type(e).__name__ for e in seen]
    assert kinds.index("SimStarted") < kinds.index("EpisodeEnded") < kinds.index("SimCompleted")
    videos = [e for e in seen if isinstance(e, ev.VideoAvailable)]
    assert sorted(v.episode for v in videos) == [0, 1]
    started = next(e for e in seen if isinstance(e, ev.SimStarted))
    assert started.gl_renderer and started.gl_backend
    assert started.physics_dt == pytest.approx(0.002)

    mp4s = sorted((a for a in result.artifacts if a.kind == "video"), key=lambda a: a.episode)
    assert len(mp4s) == 2
    total = 0
    for a in mp4s:
        assert Path(a.path).is_file() and a.url.startswith("file://")
        assert a.bytes > 1024
        frames, duration, w, h = _decode_frames(a.path)
        assert frames == 15  # duration × fps exactly
        assert abs(duration - 1.0) <= 1 / 15
        assert (w, h) == (160, 120)
        total += frames
    assert total == req.episodes * 1.0 * 15

    # Same frames, different seeds → different videos.
    assert mp4s[0].sha256 != mp4s[1].sha256

    by_kind = {a.kind: a for a in result.artifacts}
    report = json.loads(Path(by_kind["report"].path).read_text())
    assert [e["seed"] for e in report["episodes"]] == [3, 4]
    assert report["gl"]["renderer"] == started.gl_renderer
    assert "<mujoco" in Path(by_kind["scene"].path).read_text()
    rows = Path(by_kind["telemetry"].path).read_text().splitlines()
    assert len(rows) == 30
    first = json.loads(rows[16])
    assert first["episode"] == 1 and first["frame"] == 1 and first["video_t"] == pytest.approx(1 / 15)


async def test_plain_json_wire_contract(stack):
    """Another system, with nothing but nats-py and json, publishes a request and reads the results."""
    import nats

    nc = await nats.connect(stack.url)
    js = nc.jetstream()
    run_id = "wire-contract-1"
    request = {
        "type": "SimRequested",
        "run_id": run_id,
        "event_id": "req-wire-contract-1",
        "scene": "pendulum",
        "duration_s": 0.5,
        "render": {"width": 128, "height": 96, "fps": 10, "quality": "fast"},
    }
    sub = await js.subscribe(f"simreel.evt.*.*.{run_id}", ordered_consumer=True)
    await js.publish("simreel.evt.sim.requested", json.dumps(request).encode(),
                     headers={"Nats-Msg-Id": request["event_id"]})
    video, stored = None, []
    completed = None
    while completed is None or len(stored) < completed["expected_artifacts"]:
        msg = await sub.next_msg(timeout=120)
        body = json.loads(msg.data)
        assert body["type"] not in ("SimFailed", "EncodeFailed", "StoreFailed"), body
        if body["type"] == "VideoAvailable":
            video = body
        elif body["type"] == "ArtifactStored":
            stored.append(body)
        elif body["type"] == "SimCompleted":
            completed = body
    await nc.close()
    assert video["frames"] == 5 and video["fps"] == 10 and video["format"] == "mp4"
    mp4 = next(s for s in stored if s["kind"] == "video")
    assert mp4["sha256"] == video["sha256"] and mp4["url"].startswith("file://")


async def test_malformed_mjcf_fails_clearly_and_service_keeps_serving(stack):
    bad = small_request(scene="<mujoco><worldbody><geom type='sphere' size='.1'/></worldbodyy></mujoco>")
    result, seen = await run_request(stack.url, bad)
    assert result.status == "failed"
    failed = next(e for e in seen if isinstance(e, ev.SimFailed))
    assert failed.code == "scene_invalid"
    assert "line" in failed.message.lower() and "worldbody" in failed.message
    good, _ = await run_request(stack.url, small_request(duration_s=0.4))
    assert good.status == "completed"


async def test_over_limit_request_is_refused_with_the_field(stack):
    req = small_request(render=ev.RenderSpec(width=4000, height=120, fps=15))
    result, seen = await run_request(stack.url, req)
    failed = next(e for e in seen if isinstance(e, ev.SimFailed))
    assert failed.code == "limit_exceeded" and failed.field == "render.width"
    assert "1920" in failed.message


async def test_undecodable_message_is_dead_lettered_and_nothing_loops(stack):
    client = await Client.connect(NatsSettings(url=stack.url))
    try:
        dead = asyncio.create_task(_first_dead_letter(client))
        await client.bus.js.publish("simreel.evt.sim.requested", b"{not json", headers={"Nats-Msg-Id": "garbage-1"})
        await client.bus.js.publish("simreel.evt.video.available.x1", b'{"type":"VideoAvailable","run_id":"x1"}',
                                    headers={"Nats-Msg-Id": "garbage-2"})
        letters = await asyncio.wait_for(dead, 30)
        assert {d.service for d in letters} == {"simulator", "uploader"}
        assert any("malformed" in d.reason.lower() for d in letters)
        assert any("required field" in d.reason.lower() for d in letters)
        good, _ = await run_request(stack.url, small_request(duration_s=0.4))
        assert good.status == "completed"
        # Each bad message was dead-lettered exactly once: no redelivery loop.
        log = [e async for e in client.bus.replay("simreel.evt.dead.>")]
        assert sorted(d.subject for d in log if d.payload_preview.startswith("{")).count(
            "simreel.evt.sim.requested") == 1
    finally:
        await client.close()


async def _first_dead_letter(client: Client) -> list[ev.DeadLettered]:
    out = []
    async for e in client.bus.follow("simreel.evt.dead.>", from_start=True):
        out.append(e)
        if len(out) == 2:
            return out
    return out


async def test_sdk_events_in_order_and_the_videos_feed(stack):
    """Another system follows every new VideoAvailable; a client follows one run's story in order."""
    client = await Client.connect(NatsSettings(url=stack.url))
    try:
        feed: list[ev.VideoAvailable] = []

        async def watch() -> None:
            async with contextlib.aclosing(client.videos(from_start=True)) as videos:
                async for v in videos:
                    if v.run_id == "sdk-feed-1":
                        feed.append(v)
                        return

        watcher = asyncio.create_task(watch())
        run_id = await client.submit(small_request(run_id="sdk-feed-1", duration_s=0.4))
        story = []
        async with contextlib.aclosing(client.events(run_id)) as events:
            async for e in events:
                story.append(type(e).__name__)
                if isinstance(e, ev.SimCompleted):
                    break
        await asyncio.wait_for(watcher, 60)
        # Per-run subjects end with the run id; the request itself is on the shared request subject.
        assert story[0] == "SimStarted" and story.index("SimStarted") < story.index("EpisodeEnded") < \
            story.index("SimCompleted")
        assert feed[0].format == "mp4" and feed[0].frames == 6
        result = await client.wait(run_id, timeout=60)
        assert result.ok and {a.kind for a in result.artifacts} == {"video", "scene", "report", "telemetry"}
    finally:
        await client.close()
