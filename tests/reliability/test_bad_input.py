"""Bad input, each refused with a precise reason (SimFailed with code + field, or a DeadLettered event),
while the services keep serving: one stack for the module, a good run at the end."""
from __future__ import annotations

import os

import msgspec
import pytest

from simreel.contract import events as ev
from simreel.client import Client
from simreel.runtime.config import NatsSettings
from simreel.stack.embedded import Stack

from .conftest import BASE_ENV
from tests.support.artifacts import mp4_frame_count
from tests.support.eventlog import Tap, frames_in_stream, replay, submit, wait_result
from tests.support.runs import frames_of, request
from tests.support.waits import until

pytestmark = pytest.mark.integration

LIMITS = {"SIMREEL_MAX_WIDTH": "320", "SIMREEL_MAX_HEIGHT": "240", "SIMREEL_MAX_FPS": "30",
          "SIMREEL_MAX_DURATION_S": "60", "SIMREEL_MAX_EPISODES": "3"}
ALLOWED_POLICY = "entrypoint:tests.support.policies:push"

PARTS_XML = b"<mujoco><worldbody><geom name='ball' type='sphere' size='.1' pos='0 0 .5'/></worldbody></mujoco>"
INCLUDING = "<mujoco><include file='parts.xml'/><worldbody><light pos='0 0 3'/></worldbody></mujoco>"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("badinput")
    roots = base / "scenes"
    roots.mkdir()
    (roots / "ok.xml").write_bytes(PARTS_XML)
    outside = base / "outside.xml"
    outside.write_bytes(PARTS_XML)
    (roots / "escape.xml").symlink_to(outside)  # a symlink out of the scene root
    # a robot whose included parts sit in a sibling folder: climbing with '..', inside the root
    (roots / "robot").mkdir()
    (roots / "shared").mkdir()
    (roots / "shared" / "parts.xml").write_bytes(PARTS_XML)
    (roots / "robot" / "climbs.xml").write_text("<mujoco><include file='../shared/parts.xml'/></mujoco>")
    (roots / "robot" / "climbs-out.xml").write_text("<mujoco><include file='../../outside.xml'/></mujoco>")
    env = dict(os.environ)
    env.update(BASE_ENV)
    env.update(LIMITS)
    env.update({"SIMREEL_SCENE_ROOTS": str(roots), "SIMREEL_POLICY_ALLOWLIST": ALLOWED_POLICY})
    s = Stack(data_dir=base / "data", out_dir=base / "out", env=env)
    s.start()
    try:
        yield s
    finally:
        s.stop()
        print(s.logs()[-15000:])


@pytest.fixture
async def tap(stack):
    async with Tap(NatsSettings(url=stack.url)) as t:
        yield t


def _alive(stack) -> None:
    for name, procs in stack.procs.items():
        assert all(p.poll() is None for p in procs), f"{name} died"


R = lambda run_id, **kw: request(run_id, duration_s=0.4, **kw)  # noqa: E731
REFUSED = [
    # (request, code, field, words the message must contain)
    (R("bad-mjcf", scene="<mujoco><worldbody><geom type='sphere' size='.1'/></worldbodyy></mujoco>"),
     "scene_invalid", "scene", ["line 1", "worldbody"]),
    (R("inc-absolute", scene="<mujoco><include file='/etc/passwd'/></mujoco>"),
     "scene_forbidden", "scene", ["/etc/passwd", "absolute"]),
    (R("inc-dotdot", scene="<mujoco><include file='../../etc/passwd'/></mujoco>"),
     "scene_forbidden", "scene", ["'..'"]),
    (R("mesh-absolute", scene="<mujoco><asset><mesh name='m' file='/tmp/x.stl'/></asset></mujoco>"),
     "scene_forbidden", "scene", ["<mesh file>", "absolute"]),
    (R("texdir-dotdot", scene="<mujoco><compiler texturedir='../../etc'/><worldbody/></mujoco>"),
     "scene_forbidden", "scene", ["texturedir", "'..'"]),
    (R("not-shipped", scene=INCLUDING), None, "scene", ["'parts.xml'", "ship it with the request"]),
    (R("climbs-out", scene="file:robot/climbs-out.xml"), "scene_forbidden", "scene",
     ["'../../outside.xml'", "climbs out of the scene's tree"]),
    (R("meshdir-out", scene="<mujoco><compiler meshdir='../meshes'/><asset><mesh name='m' file='a.stl'/></asset>"
                            "</mujoco>"), "scene_forbidden", "scene", ["meshdir='../meshes'", "climbs out of the scene's tree"]),
    (R("file-absolute", scene="file:/etc/hostname"), "scene_forbidden", "scene", ["/etc/hostname", "scene roots"]),
    (R("file-dotdot", scene="file:../outside.xml"), "scene_forbidden", "scene", ["'..'"]),
    (R("file-symlink", scene="file:escape.xml"), "scene_forbidden", "scene", ["escape.xml", "scene roots"]),
    (R("too-wide", render=ev.RenderSpec(width=640, height=120, fps=15)), "limit_exceeded", "render.width",
     ["640", "320"]),
    (R("too-high", render=ev.RenderSpec(width=160, height=480, fps=15)), "limit_exceeded", "render.height",
     ["480", "240"]),
    (R("too-fast", render=ev.RenderSpec(width=160, height=120, fps=60)), "limit_exceeded", "render.fps",
     ["60", "30"]),
    (request("too-long", duration_s=120.0), "limit_exceeded", "duration_s", ["120", "60"]),
    (R("too-many", episodes=5), "limit_exceeded", "episodes", ["5", "3"]),
    (R("policy-denied", policy="entrypoint:os:system"), "policy_forbidden", "policy",
     ["entrypoint:os:system", "allow-list"]),
]


async def test_refused_requests_fail_precisely_and_service_keeps_serving(stack, tap):
    nats = NatsSettings(url=stack.url)
    await submit(nats, *(r for r, *_ in REFUSED))
    for req, code, field, words in REFUSED:
        result = await wait_result(nats, req.run_id, timeout=60)
        failed = tap.of(req.run_id, ev.SimFailed)
        assert result.status == "failed" and len(failed) == 1, (req.run_id, result.status, failed)
        f = failed[0]
        assert code is None or f.code == code, (req.run_id, f)
        assert f.code in ("scene_invalid", "scene_forbidden", "limit_exceeded", "policy_forbidden")
        assert f.field == field, (req.run_id, f)
        for w in words:
            assert w in f.message, (req.run_id, w, f.message)
        # A refused run produces nothing.
        assert not tap.of(req.run_id, (ev.VideoAvailable, ev.ArtifactStored))
    # Shipping the asset, or an allow-listed entrypoint, or a file under the root: accepted.
    good = [R("shipped", scene=INCLUDING, assets={"parts.xml": PARTS_XML}),
            R("policy-allowed", policy=ALLOWED_POLICY, policy_params={"level": 0.3}),
            R("file-ok", scene="file:ok.xml"),
            R("climbs-inside", scene="file:robot/climbs.xml")]
    await submit(nats, *good)
    for req in good:
        result = await wait_result(nats, req.run_id, timeout=60)
        assert result.ok, (req.run_id, result.error)
    _alive(stack)


async def test_undecodable_requests_are_dead_lettered_once(stack, tap):
    client = await Client.connect(NatsSettings(url=stack.url))
    js = client.bus.js
    try:
        bad = {
            "json-garbage": b"{not json",
            "msgpack-bytes": msgspec.msgpack.encode({"type": "SimRequested", "scene": "cartpole"}),
            "schema": b'{"type":"SimRequested","run_id":"schema-1","scene":"cartpole","render":{"width":"wide"}}',
            "run-id": b'{"type":"SimRequested","run_id":"../../etc","scene":"cartpole"}',
            "unknown-type": b'{"type":"LaunchMissiles","run_id":"x"}',
        }
        for name, data in bad.items():
            await js.publish("simreel.evt.sim.requested", data, headers={"Nats-Msg-Id": f"bad-{name}"})
        letters = await tap.wait(lambda evs: (lambda d: d if len(d) >= len(bad) else None)(
            [e for e in evs if isinstance(e, ev.DeadLettered) and e.service == "simulator"
             and e.payload_preview and "undecodable" in e.reason]), timeout=30, what="dead letters")
        reasons = {d.payload_preview[:12]: d.reason for d in letters}
        text = " | ".join(d.reason for d in letters)
        assert "malformed" in text.lower()  # {not json
        assert "Expected `int`, got `str` - at `$.render.width`" in text
        assert "$.run_id" in text
        assert "LaunchMissiles" in text
        assert all(d.subject == "simreel.evt.sim.requested" and d.deliveries == 1 for d in letters), reasons
        # The one whose run id is readable is also answered on its run's own subjects.
        (refused,) = tap.of("schema-1", ev.SimFailed)
        assert refused.code == "bad_request" and refused.field == "render.width"
        good = request("after-garbage", duration_s=0.4)
        await submit(NatsSettings(url=stack.url), good)
        assert (await wait_result(NatsSettings(url=stack.url), good.run_id, timeout=60)).ok
        # Each bad message was dead-lettered exactly once: nothing loops.
        dead = [e for e in await replay(NatsSettings(url=stack.url), "simreel.evt.dead.>")
                if e.service == "simulator" and "undecodable" in e.reason]
        assert len(dead) == len(bad)
    finally:
        await client.close()
    _alive(stack)


async def test_garbage_on_a_frames_subject_does_not_break_the_job(stack, tap):
    nats = NatsSettings(url=stack.url)
    req = request("frames-garbage", duration_s=20.0)
    await submit(nats, req)
    await tap.wait(lambda evs: tap.of(req.run_id, ev.SimStarted), timeout=60, what="SimStarted")
    js = tap.nc.jetstream()
    await until(lambda: frames_in_stream(js, req.run_id), timeout=30, what="first frames")
    assert not tap.of(req.run_id, ev.EpisodeEnded), "too late: the episode is over"
    subject = f"simreel.frames.{req.run_id}.1.0"
    foreign = ev.FrameBatch(run_id="someone-else", attempt=1, episode=0, seq=0, first_index=0, count=1,
                            width=160, height=120, times=[0.0], frames=bytes(160 * 120 * 3))
    await js.publish(subject, b"\xc1\xc1 not msgpack")  # 0xc1 is never valid msgpack
    await js.publish(subject, b'{"json": "instead of msgpack"}')
    await js.publish(subject, ev.encode_frames(foreign))
    # A FrameBatch for a run nobody started: the encoders' janitor purges it and says why.
    await js.publish("simreel.frames.ghost-run.1.0", ev.encode_frames(
        msgspec.structs.replace(foreign, run_id="ghost-run")))

    result = await wait_result(nats, req.run_id, timeout=90)
    assert result.ok, result.error
    video = next(a for a in result.artifacts if a.kind == "video")
    assert mp4_frame_count(video.path) == frames_of(req)
    letters = await tap.wait(lambda evs: (lambda d: d if len(d) >= 3 else None)(
        [e for e in evs if isinstance(e, ev.DeadLettered) and e.service == "encoder" and e.subject == subject]),
        timeout=30, what="the encoder's dead letters for the 3 bad frame messages")
    reasons = sorted(d.reason for d in letters)
    assert sum("undecodable frame batch" in r for r in reasons) == 2, reasons
    assert any("someone-else" in r and req.run_id in r for r in reasons), reasons
    # The dead letters do not fail the run they arrived on.
    assert (await wait_result(nats, req.run_id, timeout=10)).ok
    ghost = await tap.wait(lambda evs: tap.of("ghost-run", ev.DeadLettered), timeout=30,
                           what="the dead letter for frames of a run nobody started")
    assert ghost[0].subject == "simreel.frames.ghost-run.1.>" and "no SimStarted" in ghost[0].reason
    assert not await frames_in_stream(js, "ghost-run")
    assert not tap.of("ghost-run", ev.SimFailed)  # nothing else happens to a run that does not exist
    _alive(stack)


async def test_duplicate_requests_make_one_run(stack, tap):
    nats = NatsSettings(url=stack.url)
    req = request("dup-run", duration_s=0.4)
    # Within JetStream's duplicate window: the same event id, dropped by the server.
    await submit(nats, req)
    await submit(nats, req)
    first = await wait_result(nats, req.run_id, timeout=60)
    assert first.ok, first.error
    # After the window (simulated with another event id): the simulator refuses the known run id.
    client = await Client.connect(nats)
    try:
        await client.bus.publish(msgspec.structs.replace(req, event_id="req-dup-run-much-later"))
    finally:
        await client.close()
    letter = await tap.wait(lambda evs: [e for e in evs if isinstance(e, ev.DeadLettered)
                                         and "dup-run" in e.reason], timeout=30, what="the duplicate refused")
    assert letter[0].service == "simulator" and "duplicate" in letter[0].reason.lower()
    after = request("after-dup", duration_s=0.4)
    await submit(nats, after)
    assert (await wait_result(nats, after.run_id, timeout=60)).ok  # (also: the refusal was acked)
    events = [e for e in await replay(nats) if e.run_id == req.run_id]
    # The in-window resubmission was dropped by JetStream; the later one is in the log but refused.
    assert sorted(e.event_id for e in events if isinstance(e, ev.SimRequested)) == ["req-dup-run",
                                                                                     "req-dup-run-much-later"]
    assert [e.attempt for e in events if isinstance(e, ev.SimStarted)] == [1]
    assert sum(isinstance(e, ev.SimCompleted) for e in events) == 1
    # The original run is still reported as completed, with its artifacts.
    again = await wait_result(nats, req.run_id, timeout=10)
    assert again.ok and {a.key for a in again.artifacts} == {a.key for a in first.artifacts}
    _alive(stack)
