"""The ui's HTTP API on its read model: given these events and stored files, these responses come out.

No NATS here: the app is handed a `Live` fed with events, a real LocalStore on a temp dir, and a
publish function that records what the ui would put on the bus.
"""
from __future__ import annotations

import json

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from simreel.contract import events as ev
from simreel.services.ui.app import Ui, UiConfig, field_of
from simreel.services.ui.live import Live
from simreel.services.ui.security import TokenRequired, check_bind
from simreel.store.local import LocalStore

RUN = "r-ui-1"
PREFIX = f"simreel/s1/{RUN}"


def _events(store_root) -> list[ev.Event]:
    """A finished two-episode run whose artifacts exist under store_root."""
    out: list[ev.Event] = [
        ev.SimRequested(run_id=RUN, scene="cartpole", episodes=2, seed=7, session="s1", tags={"exp": "a"}),
        ev.SimStarted(run_id=RUN, attempt=1, scene="cartpole", episodes=2, frames_per_episode=[3, 3], fps=30,
                      width=16, height=16, cameras=[], physics_dt=0.002, gl_backend="egl", gl_renderer="llvmpipe",
                      session="s1", outputs=ev.OutputSpec()),
    ]
    rows = []
    for ep in (0, 1):
        out.append(ev.EpisodeEnded(run_id=RUN, attempt=1, episode=ep, seed=7 + ep, steps=50, frames=3,
                                   episode_return=-1.5 * (ep + 1), sim_time_s=0.1, wall_s=0.2,
                                   warnings=["frozen frames"] if ep == 1 else []))
        out.append(ev.VideoAvailable(run_id=RUN, attempt=1, session="s1", episode=ep, format="mp4", staged="dir:x",
                                     frames=3, fps=30, duration_s=0.1, width=16, height=16, codec="h264", bytes=10,
                                     sha256=f"sha{ep}", encode_ms=1))
        for k in range(3):
            rows.append({"episode": ep, "frame": k, "video_t": k / 30, "t": k / 30, "step": k * 16,
                         "reward": -0.5 * (ep + 1), "action": [0.1 * k, -0.1 * k]})
    files = {f"{PREFIX}/0000/episode-0000.mp4": ("video", 0, b"\x00" * 5000, "video/mp4"),
             f"{PREFIX}/0001/episode-0001.mp4": ("video", 1, b"\x01" * 5000, "video/mp4"),
             f"{PREFIX}/all/telemetry.jsonl": ("telemetry", None,
                                               "\n".join(json.dumps(r) for r in rows).encode(), "application/x-ndjson"),
             f"{PREFIX}/all/report.json": ("report", None, b'{"episodes": 2}', "application/json"),
             f"{PREFIX}/all/scene.xml": ("scene", None, b"<mujoco/>", "application/xml")}
    for key, (kind, ep, data, ctype) in files.items():
        path = store_root.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out.append(ev.ArtifactStored(run_id=RUN, kind=kind, format=key.rsplit(".", 1)[-1], episode=ep, session="s1",
                                     key=key, url=path.as_uri(), path=str(path), bytes=len(data), sha256=f"h-{key}",
                                     content_type=ctype))
    out.append(ev.SimCompleted(run_id=RUN, attempt=1, episodes=2, frames=6, wall_s=1, session="s1",
                               expected_artifacts=len(files)))
    return out


@pytest.fixture
async def ui(tmp_path):
    live = Live()
    for e in _events(tmp_path):
        live.apply(e)
    live.caught_up.set()
    published: list[ev.Event] = []

    async def publish(e):
        published.append(e)

    app = Ui(live, LocalStore(tmp_path), publish, UiConfig(max_upload_bytes=64 * 1024, max_scene_bytes=64 * 1024),
             scenes=lambda: {"builtin": ["cartpole"], "gymnasium": [], "policies": ["zero"]})
    client = TestClient(TestServer(app.app()))
    await client.start_server()
    # Every write needs the CSRF cookie the first GET sets, echoed in a header.
    r = await client.get("/")
    assert r.status == 200
    csrf = client.session.cookie_jar.filter_cookies(client.make_url("/"))["simreel_csrf"].value
    client.csrf_headers = {"X-CSRF-Token": csrf}
    client.live, client.published = live, published
    yield client
    await client.close()


async def test_runs_list_is_newest_first_with_summary_and_filters(ui):
    for i in range(3):
        ui.live.apply(ev.SimRequested(run_id=f"later-{i}", scene="boxes", session="s2", ts=2e9 + i))
    body = await (await ui.get("/api/runs?limit=2")).json()
    assert body["total"] == 4 and [r["run_id"] for r in body["runs"]] == ["later-2", "later-1"]
    body = await (await ui.get("/api/runs?offset=3&limit=2")).json()
    r = body["runs"][0]
    assert r["run_id"] == RUN and r["status"] == "completed" and r["seeds"] == [7, 8]
    assert r["mean_return"] == pytest.approx(-2.25) and r["artifacts"] == 5 and r["tags"] == {"exp": "a"}
    assert r["warnings"] == ["episode 1: frozen frames"]
    assert [x["run_id"] for x in (await (await ui.get("/api/runs?session=s1")).json())["runs"]] == [RUN]
    assert (await (await ui.get("/api/runs?tag=exp=a")).json())["total"] == 1
    assert (await (await ui.get("/api/runs?tag=exp=b")).json())["total"] == 0
    assert (await (await ui.get("/api/runs?status=queued&scene=box")).json())["total"] == 3
    assert (await ui.get("/api/runs?limit=x")).status == 400


async def test_run_detail_has_episodes_videos_and_artifacts(ui):
    d = await (await ui.get(f"/api/runs/{RUN}")).json()
    assert [e["return"] for e in d["episodes"]] == [-1.5, -3.0] and d["gl_renderer"] == "llvmpipe"
    assert d["videos"]["0"][0]["href"] == f"/files/{PREFIX}/0000/episode-0000.mp4" and d["fps"] == 30
    assert sorted(d["has"]) == ["report", "scene", "telemetry"]
    assert d["request"]["seed"] == 7


async def test_bad_and_unknown_run_ids(ui):
    assert (await ui.get("/api/runs/no-such-run")).status == 404
    r = await ui.get("/api/runs/bad.id")
    assert r.status == 400 and "not a run id" in (await r.json())["error"]


async def test_telemetry_as_compact_columns_with_return_so_far(ui):
    cols = await (await ui.get(f"/api/runs/{RUN}/telemetry?episode=1")).json()
    assert cols["frame"] == [0, 1, 2] and cols["video_t"] == pytest.approx([0, 1 / 30, 2 / 30]) and cols["fps"] == 30
    series = {s["name"]: s for s in cols["series"]}
    assert series["reward"]["values"] == [-1.0, -1.0, -1.0]
    assert series["return"]["values"] == [-1.0, -2.0, -3.0]
    assert series["action[1]"]["values"] == pytest.approx([0, -0.1, -0.2]) and series["action[1]"]["group"] == "action"
    assert (await ui.get(f"/api/runs/{RUN}/telemetry?episode=9")).status == 404
    assert (await ui.get(f"/api/runs/{RUN}/telemetry?episode=x")).status == 400


async def test_video_served_with_range_requests(ui):
    url = f"/files/{PREFIX}/0000/episode-0000.mp4"
    full = await ui.get(url)
    assert full.status == 200 and full.headers["Accept-Ranges"] == "bytes" and full.content_type == "video/mp4"
    part = await ui.get(url, headers={"Range": "bytes=100-199"})
    assert part.status == 206 and part.headers["Content-Range"] == "bytes 100-199/5000"
    assert await part.read() == b"\x00" * 100
    assert (await ui.get(url, headers={"Range": "bytes=9000-"})).status == 416


@pytest.mark.parametrize("key", [
    "simreel/s1/r-ui-1/../../../etc/passwd", "simreel/s1/r-ui-1/0000/%2e%2e/x", "..%2f..%2fetc/passwd",
    "simreel/s1/other/0000/episode-0000.mp4", "/etc/passwd",
])
async def test_path_escapes_and_unknown_keys_are_refused(ui, key):
    r = await ui.get(f"/files/{key}")
    assert r.status in (400, 404)
    assert b"root:" not in await r.read()


async def test_submit_publishes_a_valid_request_and_marks_the_bad_field(ui):
    good = {"scene": "cartpole", "episodes": 2, "render": {"width": 160, "height": 120}, "session": "s9"}
    r = await ui.post("/api/runs", json=good, headers=ui.csrf_headers)
    assert r.status == 202
    req = ui.published[-1]
    assert isinstance(req, ev.SimRequested) and req.render.width == 160 and req.event_id == f"req-{req.run_id}"
    bad = {"scene": "cartpole", "render": {"width": 99999}}
    r = await ui.post("/api/runs", json=bad, headers=ui.csrf_headers)
    body = await r.json()
    assert r.status == 400 and body["field"] == "render.width" and "4096" in body["error"]
    assert len(ui.published) == 1


async def test_writes_need_the_csrf_token(ui):
    r = await ui.post("/api/runs", json={"scene": "cartpole"})
    assert r.status == 403
    r = await ui.post(f"/api/runs/{RUN}/delete", headers={"X-CSRF-Token": "forged"})
    assert r.status == 403 and not ui.published


async def test_delete_publishes_delete_requested(ui):
    r = await ui.post(f"/api/runs/{RUN}/delete", headers=ui.csrf_headers)
    assert r.status == 202
    assert isinstance(ui.published[-1], ev.DeleteRequested) and ui.published[-1].run_id == RUN


async def test_an_uploaded_robot_is_checked_before_anything_is_stored(ui):
    """The same sandboxed loader as the simulator's, before any upload: a reference outside the upload
    is refused at once, next to the upload field; over-cap uploads are refused while they stream."""
    import aiohttp

    mjcf = b"<mujoco><asset><texture name='t' file='t.png' type='2d'/></asset><worldbody><geom size='1'/></worldbody></mujoco>"
    evil = aiohttp.FormData()
    evil.add_field("request", json.dumps({"scene": "placeholder"}))
    evil.add_field("scene_file", mjcf.replace(b"t.png", b"/etc/passwd"), filename="robot.xml")
    r = await ui.post("/api/runs", data=evil, headers=ui.csrf_headers)
    body = await r.json()
    assert r.status == 400 and body["field"] == "scene_file" and body["error"].startswith("scene_forbidden")
    climbing = aiohttp.FormData()
    climbing.add_field("request", json.dumps({"scene": "placeholder"}))
    climbing.add_field("tree", mjcf, filename="robot/robot.xml")
    climbing.add_field("tree", _png(), filename="../t.png")
    r = await ui.post("/api/runs", data=climbing, headers=ui.csrf_headers)
    assert r.status == 400 and "outside the upload" in (await r.json())["error"]
    big = aiohttp.FormData()
    big.add_field("request", json.dumps({"scene": "cartpole"}))
    big.add_field("assets", b"x" * (65 * 1024), filename="big.bin")
    r = await ui.post("/api/runs", data=big, headers=ui.csrf_headers)
    body = await r.json()
    assert r.status == 413 and "per-scene cap" in body["error"] and "SIMREEL_MAX_SCENE_BYTES" in body["error"]
    assert ui.published == []


def _png() -> bytes:
    from simreel.services.ui.preview import png

    import numpy as np

    return png(np.zeros((4, 4, 3), np.uint8))


async def test_report_and_scene_text(ui):
    assert (await (await ui.get(f"/api/runs/{RUN}/text/report")).json()) == {"episodes": 2}
    assert await (await ui.get(f"/api/runs/{RUN}/text/scene")).text() == "<mujoco/>"
    assert (await ui.get(f"/api/runs/{RUN}/text/passwd")).status == 404


async def test_run_again_request_roundtrips_into_the_contract(ui):
    raw = await (await ui.get(f"/api/runs/{RUN}/request")).json()
    again = msgspec.convert({**raw, "type": "SimRequested"}, ev.SimRequested)
    assert again.seed == 7 and again.episodes == 2 and again.tags == {"exp": "a"}


def test_listening_beyond_loopback_needs_a_token():
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    with pytest.raises(TokenRequired, match="SIMREEL_UI_TOKEN"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "s3cret")


async def test_token_protects_every_route(tmp_path):
    live = Live()

    async def publish(e):
        raise AssertionError("nothing may be published")

    app = Ui(live, LocalStore(tmp_path), publish, UiConfig(host="0.0.0.0", token="s3cret"))
    async with TestClient(TestServer(app.app())) as c:
        assert (await c.get("/api/runs")).status == 401
        assert (await c.get("/api/runs", headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await c.get("/api/runs", headers={"Authorization": "Bearer s3cret"})).status == 200
        r = await c.get("/?token=s3cret", allow_redirects=False)
        assert r.status == 302 and "token" not in r.headers["Location"]
        assert (await c.get("/api/runs")).status == 200  # the cookie now carries it
        page = await (await c.get("/")).text()
        assert "s3cret" not in page


def test_field_of_reads_msgspec_paths():
    assert field_of("Expected `int` <= 4096 - at `$.render.width`") == "render.width"
    assert field_of("Object missing required field `scene`") is None


async def test_live_recorders_are_listed_apart_from_runs_and_steered_by_events(ui):
    ui.live.apply(ev.RecorderAnnounced(run_id="rec-1", session="train", env_id="CartPole-v1", trigger="every 2 episodes",
                                       episodes_seen=3, cadence=2))
    assert "rec-1" not in ui.live.index.runs
    recs = (await (await ui.get("/api/recorders")).json())["recorders"]
    assert [r["recorder_id"] for r in recs] == ["rec-1"] and recs[0]["trigger"] == "every 2 episodes"
    r = await ui.post("/api/recorders/rec-1/control", json={"action": "record_next"}, headers=ui.csrf_headers)
    assert r.status == 202
    req = ui.published[-1]
    assert isinstance(req, ev.CaptureControlRequested) and req.run_id == "rec-1" and req.action == "record_next"
    ui.live.apply(req)
    assert (await (await ui.get("/api/recorders")).json())["recorders"][0]["pending"][0]["action"] == "record_next"
    ui.live.apply(ev.CaptureControlApplied(run_id="rec-1", request_event_id=req.event_id, action="record_next",
                                           episode=4))
    rec = (await (await ui.get("/api/recorders")).json())["recorders"][0]
    assert rec["pending"] == [] and rec["applied"][-1]["episode"] == 4
    bad = await ui.post("/api/recorders/rec-1/control", json={"action": "every"}, headers=ui.csrf_headers)
    assert bad.status == 400 and (await bad.json())["field"] == "every"
    bad = await ui.post("/api/recorders/rec-1/control", json={"action": "explode"}, headers=ui.csrf_headers)
    assert bad.status == 400 and (await bad.json())["field"] == "action"
    assert (await ui.post("/api/recorders/nope/control", json={"action": "off"}, headers=ui.csrf_headers)).status == 404
    ui.live.apply(ev.RecorderAnnounced(run_id="rec-1", session="train", trigger="every 2 episodes", state="closed"))
    assert (await (await ui.get("/api/recorders")).json())["recorders"] == []
    assert (await ui.post("/api/recorders/rec-1/control", json={"action": "off"}, headers=ui.csrf_headers)).status == 409


def test_telemetry_parse_reads_one_episode_of_compact_rows_and_keeps_names():
    from simreel.services.ui import telemetry

    rows = [{"episode": ep, "frame": k, "video_t": k / 30, "reward": 1.0, "qpos": [k, -k]}
            for ep in (0, 1, 2) for k in range(3)]
    rows[0]["names"] = {"qpos": ["slider", "hinge"]}
    compact = "\n".join(json.dumps(r, separators=(",", ":")) for r in rows).encode()
    spaced = "\n".join(json.dumps(r) for r in rows).encode()
    for data in (compact, spaced):
        t = telemetry.parse(data, 2)
        assert list(t.episodes) == ([2] if data is compact else [0, 1, 2])
        cols = t.columns(2)
        assert [s["name"] for s in cols["series"] if s["group"] == "qpos"] == ["qpos[slider]", "qpos[hinge]"]
        assert cols["frame"] == [0, 1, 2]


def test_live_pushes_changes_only_after_the_replay_then_each_event():
    live = Live()
    page, run_page = live.subscribe(), live.subscribe("r1")
    live.apply(ev.SimRequested(run_id="r1", scene="cartpole"))  # part of the replayed past
    assert page.queue.empty() and run_page.queue.empty() and "r1" in live.index.runs
    live.caught_up.set()
    live.replayed()
    assert page.queue.get_nowait()[0] == "replayed" and run_page.queue.get_nowait()[0] == "replayed"
    live.apply(ev.SimFailed(run_id="r1", code="scene_invalid", message="bad"))
    kind, summary = page.queue.get_nowait()
    assert kind == "run" and summary["status"] == "failed"
    kind, data = run_page.queue.get_nowait()
    assert kind == "event" and data["type"] == "SimFailed" and data["event"]["message"] == "bad"
    live.apply(ev.SimRequested(run_id="r2", scene="boxes"))
    assert page.queue.get_nowait()[1]["run_id"] == "r2" and run_page.queue.empty()  # not r1's page


def test_concatenated_video_columns_run_on_its_own_time_axis():
    from simreel.services.ui import telemetry

    rows = [{"episode": ep, "frame": k, "video_t": k / 10, "concat_frame": ep * 2 + k, "concat_t": (ep * 2 + k) / 10,
             "reward": 1.0} for ep in (0, 1) for k in range(2)]
    cols = telemetry.parse("\n".join(json.dumps(r, separators=(",", ":")) for r in rows).encode()).columns(None)
    assert cols["video_t"] == pytest.approx([0, 0.1, 0.2, 0.3]) and cols["frame"] == [0, 1, 0, 1]
    ret = next(s for s in cols["series"] if s["name"] == "return")
    assert ret["values"] == [1.0, 2.0, 1.0, 2.0]  # return so far, per episode, along the concatenated video
