"""The ui as a process of a real stack (nats-server + services), over real HTTP: submit, follow live,
read the run back with its telemetry, seek into its video, delete it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ui import UiClient, ui_stack

pytestmark = pytest.mark.integration

REQUEST = {"scene": "cartpole", "episodes": 2, "duration_s": 1.0, "policy": "random", "seed": 5,
           "render": {"width": 96, "height": 64, "fps": 15, "quality": "fast"}, "session": "ui-it",
           "tags": {"suite": "ui"}}


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    with ui_stack(tmp_path_factory.mktemp("ui")) as (stack, url):
        yield stack, UiClient(url)


def _until(events, predicate):
    for kind, data in events:
        if predicate(kind, data):
            return data
    raise AssertionError("event stream ended")


def test_submitted_run_is_followed_live_and_served_with_its_telemetry(ui):
    stack, c = ui
    status, body = c.json("POST", "/api/runs", REQUEST)
    assert status == 202, body
    run_id = body["run_id"]
    events = c.sse(f"?run={run_id}")
    done = _until(events, lambda k, d: k == "event" and d["summary"]["status"] in ("completed", "failed"))
    assert done["summary"]["status"] == "completed", stack.logs()[-3000:]

    status, d = c.json("GET", f"/api/runs/{run_id}")
    assert status == 200 and [e["seed"] for e in d["episodes"]] == [5, 6] and d["gl_renderer"]
    video = d["videos"]["1"][0]
    assert video["frames"] == 15 and video["codec"] == "libx264" and video["av1"] is False
    st, headers, data = c.request("GET", video["href"], headers={"Range": "bytes=0-99"})
    assert st == 206 and len(data) == 100 and headers["Content-Range"].startswith("bytes 0-99/")
    assert data[4:8] == b"ftyp"  # an MP4, served from the store ...
    ftyp = int.from_bytes(data[:4], "big")
    assert data[ftyp + 4:ftyp + 8] == b"moov"  # ... with faststart: the index first, so playback starts at once

    status, cols = c.json("GET", f"/api/runs/{run_id}/telemetry?episode=1")
    assert status == 200 and cols["frame"] == list(range(15))
    assert cols["video_t"] == pytest.approx([k / 15 for k in range(15)])
    names = {s["name"] for s in cols["series"]}
    # Labelled from the model: actuators for actions, joints for qpos / qvel (the header line).
    assert {"reward", "return", "action[push]", "action[twist]", "qpos[slider]", "qpos[hinge]", "qvel[hinge]"} <= names
    qpos = next(s for s in cols["series"] if s["name"] == "qpos[hinge]")
    assert qpos["group"] == "qpos" and len(qpos["values"]) == 15 and len(set(qpos["values"])) > 1

    status, page = c.json("GET", "/api/runs?session=ui-it&tag=suite=ui")
    assert page["total"] == 1 and page["runs"][0]["status"] == "completed"


def test_delete_from_the_ui_removes_the_files_and_shows_the_deletions(ui):
    stack, c = ui
    status, body = c.json("POST", "/api/runs", {**REQUEST, "episodes": 1, "session": "ui-del"})
    run_id = body["run_id"]
    events = c.sse(f"?run={run_id}")
    _until(events, lambda k, d: k == "event" and d["summary"]["status"] == "completed")
    _, d = c.json("GET", f"/api/runs/{run_id}")
    paths = [Path(stack.out_dir, *a["key"].split("/")) for a in d["artifacts"]]
    assert paths and all(p.is_file() for p in paths)

    status, body = c.json("POST", f"/api/runs/{run_id}/delete")
    assert status == 202
    deleted: set[str] = set()
    for kind, data in events:
        if kind == "event" and data["type"] == "ArtifactDeleted":
            deleted.add(data["event"]["key"])
            if len(deleted) == len(paths):
                break
    assert not any(p.exists() for p in paths)
    _, d = c.json("GET", f"/api/runs/{run_id}")
    assert len(d["deletions"]) == len(paths) and all(a["deleted"] for a in d["artifacts"])
    assert c.request("GET", d["artifacts"][0]["href"])[0] == 404


def test_invalid_request_gets_the_contract_error_and_publishes_nothing(ui):
    _, c = ui
    _, before = c.json("GET", "/api/runs")
    status, body = c.json("POST", "/api/runs", {**REQUEST, "render": {"width": 99999}})
    assert status == 400 and body["field"] == "render.width" and "<= 4096" in body["error"]
    _, after = c.json("GET", "/api/runs")
    assert after["total"] == before["total"]


def test_ui_refuses_to_listen_beyond_loopback_without_a_token(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SIMREEL_NATS_URL": "nats://127.0.0.1:1"}
    p = subprocess.run([sys.executable, "-m", "simreel.cli", "ui", "--host", "0.0.0.0"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "SIMREEL_UI_TOKEN" in p.stderr


def test_a_run_in_flight_streams_progress_and_a_live_preview(ui):
    """Progress and preview come from the ui's own ephemeral FRAMES consumer while a page watches."""
    import base64
    import threading

    _, c = ui
    run_id = "ui-live-preview"
    events = c.sse(f"?run={run_id}")
    assert next(events)[0] == "hello"  # watching before the run exists
    threading.Thread(target=c.json, args=("POST", "/api/runs", {**REQUEST, "run_id": run_id, "episodes": 1,
                                                                "duration_s": 3.0}), daemon=True).start()
    previews, progress, final = [], [], None
    for kind, d in events:
        if kind == "preview":
            previews.append(d)
        elif kind == "progress":
            progress.append(d)
        elif kind == "event" and d["summary"]["status"] in ("completed", "failed"):
            final = d["summary"]["status"]
            break
    assert final == "completed"
    assert progress and max(p["frame"] for p in progress) > 0 and progress[-1]["frames"] == 45
    assert previews, "no live preview while the run was in flight"
    png = base64.b64decode(previews[-1]["png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 96  # width, not downscaled


def test_telemetry_fields_are_selectable_and_bounded(ui):
    stack, c = ui
    only = {**REQUEST, "episodes": 1, "outputs": {"telemetry_fields": ["qvel"]}, "session": "ui-fields"}
    status, body = c.json("POST", "/api/runs", only)
    _until(c.sse(f"?run={body['run_id']}"), lambda k, d: k == "event" and d["summary"]["status"] == "completed")
    _, cols = c.json("GET", f"/api/runs/{body['run_id']}/telemetry?episode=0")
    groups = {s["group"] for s in cols["series"]}
    assert "qvel" in groups and "qpos" not in groups
    line = Path(stack.out_dir, *next(a["key"] for a in c.json("GET", f"/api/runs/{body['run_id']}")[1]["artifacts"]
                                     if a["kind"] == "telemetry").split("/")).read_text().splitlines()
    first, second = json.loads(line[0]), json.loads(line[1])
    assert first["names"] == {"action": ["push", "twist"], "qvel": ["slider", "hinge"]} and "names" not in second
    assert len(line) == 15 and first["frame"] == 0  # every line is a frame row, as before
    assert set(first) >= {"episode", "frame", "video_t", "t", "step", "reward", "action", "qvel"}

    wrong = {**REQUEST, "episodes": 1, "outputs": {"telemetry_fields": ["obs"]}, "session": "ui-fields"}
    status, body = c.json("POST", "/api/runs", wrong)
    done = _until(c.sse(f"?run={body['run_id']}"), lambda k, d: k == "event" and d["summary"]["status"] == "failed")
    assert done["summary"]["error_code"] == "bad_request" and "'obs' is not recorded" in done["summary"]["error"]


def test_on_s3_videos_are_presigned_redirects_and_telemetry_is_read_through_the_store(tmp_path):
    """With SIMREEL_STORE=s3 (a real `weed server -s3`), the ui hands the browser presigned URLs for
    videos and reads telemetry and the report through the S3 store itself."""
    import urllib.error
    import urllib.request

    from tests.support.s3server import S3Server

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    with S3Server() as s3, ui_stack(tmp_path, **s3.env("ui-artifacts")) as (stack, url):
        c = UiClient(url)
        status, body = c.json("POST", "/api/runs", {**REQUEST, "episodes": 1, "session": "ui-s3"})
        _until(c.sse(f"?run={body['run_id']}"), lambda k, d: k == "event" and d["summary"]["status"] == "completed")
        _, d = c.json("GET", f"/api/runs/{body['run_id']}")
        href = d["videos"]["0"][0]["href"]
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(url + href, timeout=30)
        assert redirect.value.code == 302
        location = redirect.value.headers["Location"]
        assert "X-Amz-Signature=" in location and location.startswith(s3.url)
        with urllib.request.urlopen(urllib.request.Request(location, headers={"Range": "bytes=0-63"}), timeout=30) as r:
            assert r.status == 206 and r.read()[4:8] == b"ftyp"
        status, cols = c.json("GET", f"/api/runs/{body['run_id']}/telemetry?episode=0")
        assert status == 200 and cols["frame"] == list(range(15))
        assert c.request("GET", f"/api/runs/{body['run_id']}/text/report")[0] == 200
