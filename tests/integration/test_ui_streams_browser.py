"""A run's depth and segmentation on its run page, in headless Chromium on a real stack: the previews
beside the video follow its frame, and the pointer reads the stored depth (metres) and the object's
name. The scene's answers are known: a camera 2 m above a floor, a 0.4 m crate under it (its top 1.6 m
away), a pendulum swinging at the side so that frames differ. Screenshot: ui-streams.png."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support.ui import UiClient, chromium, ui_stack

pytestmark = [pytest.mark.integration, pytest.mark.browser]

from playwright.sync_api import expect  # noqa: E402 - in the test extras

FPS = 10
SCENE = """<mujoco><worldbody><light pos="0 0 3"/>
<camera name="down" pos="0 0 2" fovy="45"/>
<geom name="floor" type="plane" size="5 5 .1" rgba=".5 .5 .5 1"/>
<body name="crate" pos="0 0 .2"><geom name="crate" type="box" size=".2 .2 .2" rgba=".8 .3 .2 1"/></body>
<body name="arm" pos=".55 0 .4"><joint name="swing" type="hinge" axis="0 1 0"/>
<geom name="bob" type="capsule" fromto="0 0 0 0 0 -.3" size=".04" rgba=".2 .4 .8 1"/></body>
</worldbody><actuator><motor joint="swing" gear="2"/></actuator></mujoco>"""
RUN = {"scene": SCENE, "episodes": 1, "duration_s": 2.0, "policy": "sine", "seed": 2, "session": "streams",
       "render": {"width": 192, "height": 144, "fps": FPS, "cameras": ["down"],
                  "streams": ["rgb", "depth", "segmentation"]}}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("ui-streams")
    shots = Path(os.environ.get("SIMREEL_UI_SCREENSHOTS") or base / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with ui_stack(base) as (stack, url):
        c = UiClient(url)
        status, body = c.json("POST", "/api/runs", RUN)
        assert status == 202, body
        for kind, d in c.sse(f"?run={body['run_id']}"):
            if kind == "event" and d["summary"]["status"] in ("completed", "failed"):
                assert d["summary"]["status"] == "completed", d["summary"]
                break
        with chromium(base / "chromium-profile", height=900) as ctx:
            yield {"url": url, "ctx": ctx, "run": body["run_id"], "shots": shots}


def test_streams_follow_the_video_and_the_pointer_reads_depth_and_object(env):
    page = env["ctx"].new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f'{env["url"]}/runs/{env["run"]}')
    expect(page.locator("body")).to_have_attribute("data-charts", "0", timeout=30_000)
    depth, seg = page.locator('#streams video[data-stream="depth"]'), page.locator('#streams video[data-stream="segmentation"]')
    expect(depth).to_have_count(1)
    expect(seg).to_have_count(1)
    for v in (depth, seg):  # loaded, at the size of the video
        expect(v).to_have_js_property("readyState", 4, timeout=30_000)
        assert v.evaluate("v => [v.videoWidth, v.videoHeight]") == [192, 144]

    # Under the one cursor: the video at 1.25 s is frame 12; the charts and both previews show it.
    page.evaluate("document.querySelector('#video').currentTime = 1.25")
    expect(page.locator("#charts")).to_have_attribute("data-frame", "12")
    expect(depth).to_have_attribute("data-frame", "12")
    expect(seg).to_have_attribute("data-frame", "12")
    for v in (depth, seg):
        t = v.evaluate("v => v.currentTime")
        assert 1.2 <= t < 1.3  # inside frame 12's interval [1.2, 1.3)
    page.keyboard.press("ArrowRight")
    expect(depth).to_have_attribute("data-frame", "13")

    # The pointer over the middle of the depth preview: the crate's top, 1.6 m away.
    pointer = page.locator("#pointer")
    box = depth.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(pointer).to_have_attribute("data-frame", "13")
    expect(pointer).to_have_attribute("data-object", "crate")
    assert abs(float(pointer.get_attribute("data-depth-m")) - 1.6) <= 0.0015
    expect(pointer).to_contain_text(re.compile(r"depth 1\.60\d m · geom crate"))
    # …and over a corner of the segmentation preview: the floor, 2 m away (the camera looks straight down).
    box = seg.bounding_box()
    page.mouse.move(box["x"] + 4, box["y"] + 4)
    expect(pointer).to_have_attribute("data-object", "floor")
    assert abs(float(pointer.get_attribute("data-depth-m")) - 2.0) <= 0.0015
    # The same pixel of the RGB video reads the same.
    box = page.locator("#video").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2 - 10)
    expect(pointer).to_have_attribute("data-object", "crate")
    page.screenshot(path=str(env["shots"] / "ui-streams.png"), full_page=False)

    # Run again: the form comes back with the run's streams ticked, and sends them.
    page.click("#again")
    expect(page.locator("body")).to_have_attribute("data-loaded", "1")
    expect(page.locator('input[name="render.streams"][value="depth"]')).to_be_checked()
    expect(page.locator('input[name="render.streams"][value="segmentation"]')).to_be_checked()
    page.locator('input[name="render.streams"][value="segmentation"]').uncheck()
    sent = page.evaluate("""() => new Promise((ok) => { const f = window.fetch;
        window.fetch = (url, o) => { if (o && o.method === 'POST') { ok(JSON.parse(o.body.get('request')).render.streams);
          return new Promise(() => {}); } return f(url, o); };
        document.querySelector('#submit').click(); })""")
    assert sent == ["rgb", "depth"]
    page.close()
    assert not errors, errors
