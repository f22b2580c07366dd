"""The ui in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) on a real stack.

Video and charts share one exact time axis: these tests seek, click and step and check frame numbers,
not pixels. Screenshots of the runs page and a run page land in SIMREEL_UI_SCREENSHOTS (default: the
test's temporary directory).
"""
from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from tests.support.ui import UiClient, chromium, ui_stack

pytestmark = [pytest.mark.integration, pytest.mark.browser]

from playwright.sync_api import expect  # noqa: E402 - in the test extras

FPS = 30
RUN = {"scene": "cartpole", "episodes": 2, "duration_s": 2.0, "policy": "random", "seed": 11,
       "render": {"width": 160, "height": 120, "fps": FPS, "quality": "fast"}, "session": "browser",
       "tags": {"suite": "browser"}, "outputs": {"layout": "both"}}


def _wait_completed(c: UiClient, run_id: str) -> None:
    for kind, d in c.sse(f"?run={run_id}"):
        if kind == "event" and d["summary"]["status"] in ("completed", "failed"):
            assert d["summary"]["status"] == "completed", d["summary"]
            return


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("ui-browser")
    shots = Path(os.environ.get("SIMREEL_UI_SCREENSHOTS") or base / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with ui_stack(base) as (stack, url):
        c = UiClient(url)
        status, body = c.json("POST", "/api/runs", RUN)
        assert status == 202, body
        _wait_completed(c, body["run_id"])
        with chromium(base / "chromium-profile") as ctx:
            yield {"stack": stack, "url": url, "client": c, "ctx": ctx, "run": body["run_id"], "shots": shots}


@pytest.fixture
def page(env):
    page = env["ctx"].new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    page.close()
    assert not errors, errors


def test_runs_page_lists_runs_and_a_running_one_turns_completed_live(env, page):
    page.goto(env["url"] + "/")
    row = page.locator(f'tr[data-run="{env["run"]}"]')
    expect(row.locator(".status")).to_have_text("completed")
    expect(page.locator("#live")).to_have_text("live")
    # Record every status the new run's row shows, without reloading the page.
    page.evaluate("""() => { window.__sameDocument = true; window.__seen = [];
        new MutationObserver(() => document.querySelectorAll('tr[data-run] .status').forEach(
            (s) => window.__seen.push(s.closest('tr').dataset.run + ':' + s.textContent)))
          .observe(document.querySelector('#runs tbody'), {childList: true, subtree: true}); }""")
    # A short run can go from queued to completed within the page's 300 ms reload debounce; with the
    # uploader paused it cannot complete, so the row must first show it unfinished, whatever the load.
    uploader = env["stack"].procs["uploader"][0]
    uploader.send_signal(signal.SIGSTOP)
    try:
        status, body = env["client"].json("POST", "/api/runs", {**RUN, "episodes": 1, "seed": 99})
        new = body["run_id"]
        expect(page.locator(f'tr[data-run="{new}"] .status')).to_have_text(
            re.compile("queued|running|storing"), timeout=120_000)
    finally:
        uploader.send_signal(signal.SIGCONT)
    expect(page.locator(f'tr[data-run="{new}"] .status')).to_have_text("completed", timeout=120_000)
    seen = [s.split(":", 1)[1] for s in page.evaluate("window.__seen") if s.startswith(new + ":")]
    assert page.evaluate("window.__sameDocument") is True
    assert seen[-1] == "completed" and set(seen) & {"queued", "running", "storing"}, seen
    page.screenshot(path=str(env["shots"] / "ui-runs.png"))


def test_run_page_plays_video_and_keeps_charts_on_its_exact_time_axis(env, page):
    page.goto(f'{env["url"]}/runs/{env["run"]}')
    expect(page.locator("body")).to_have_attribute("data-charts", "0", timeout=30_000)
    charts = page.locator("#charts")
    # The video plays: its clock advances.
    played = page.evaluate("""() => new Promise((ok, fail) => { const v = document.querySelector('video');
        const t0 = v.currentTime; v.addEventListener('timeupdate', function f() {
          if (v.currentTime > t0 + 0.3) { v.removeEventListener('timeupdate', f); v.pause(); ok(v.currentTime); } });
        v.play().catch(fail); })""")
    assert played > 0.3
    # Setting the video's time moves every chart's cursor to that frame: 1.5 s × 30 fps = frame 45.
    page.evaluate("document.querySelector('video').currentTime = 1.5")
    expect(charts).to_have_attribute("data-frame", "45")
    expect(page.locator(".chart").first).to_have_attribute("data-frame", "45")
    # A click on a chart at frame 30 seeks the video to that frame's video_t = 1.000 s.
    x, y = page.evaluate("""() => { const u = simreel.player.charts[0], r = u.over.getBoundingClientRect();
        return [r.left + u.valToPos(simreel.player.t[30], 'x'), r.top + r.height / 2]; }""")
    page.mouse.click(x, y)
    expect(charts).to_have_attribute("data-frame", "30")
    t = page.evaluate("document.querySelector('video').currentTime")
    assert abs(t - 1.0) <= 0.5 / FPS
    # ArrowRight advances exactly one frame.
    page.keyboard.press("ArrowRight")
    expect(charts).to_have_attribute("data-frame", "31")
    t2 = page.evaluate("document.querySelector('video').currentTime")
    assert abs((t2 - t) - 1 / FPS) < 1e-6
    page.keyboard.press("ArrowLeft")
    expect(charts).to_have_attribute("data-frame", "30")
    # With the pointer away from the charts, every chart's legend reads the video's frame (30).
    page.mouse.move(0, 0)
    legends = page.evaluate("""() => simreel.player.charts.map((u) => {
        const cells = [...u.root.querySelectorAll('.u-legend .u-series')].slice(1)
          .map((tr) => tr.querySelector('.u-value').textContent);
        return { cells, values: u.data.slice(1).map((col) => col[30]) }; })""")
    assert len(legends) >= 2
    for chart in legends:
        assert chart["cells"] and len(chart["cells"]) == len(chart["values"])
        for text, value in zip(chart["cells"], chart["values"]):
            assert text != "--" and abs(float(text.replace(",", "")) - value) <= 5e-4 + 1e-3 * abs(value), (text, value)
    expect(page.locator("#facts")).to_contain_text("GL ")
    expect(page.locator("#episodes tbody tr")).to_have_count(2)
    page.screenshot(path=str(env["shots"] / "ui-run.png"), full_page=False)
    # The concatenated video has its own time axis: 2.5 s into it is episode 1's frame 15.
    page.click('#tabs button[data-episode="all"]')
    expect(page.locator("body")).to_have_attribute("data-charts", "all")
    page.evaluate("document.querySelector('video').currentTime = 2.5")
    expect(charts).to_have_attribute("data-frame", "15")
    assert page.evaluate("simreel.player.t.length") == 120


def test_a_run_in_flight_shows_progress_and_a_live_preview(env, page):
    import threading

    run_id = "browser-in-flight"
    page.goto(f"{env['url']}/runs/{run_id}")  # watching before the run exists
    expect(page.locator("#live")).to_have_text("live")
    # 30 s of simulated time (900 frames): a few seconds in flight on this machine, long enough to watch.
    threading.Thread(target=env["client"].json, args=("POST", "/api/runs", {**RUN, "run_id": run_id, "episodes": 1,
                                                                             "duration_s": 30.0}), daemon=True).start()
    expect(page.locator("#progress")).to_be_visible(timeout=60_000)
    expect(page.locator("#preview")).to_be_visible(timeout=60_000)  # a frame from FRAMES, as a PNG
    expect(page.locator("#txt-sim")).to_contain_text("/ 900 frames")
    assert page.evaluate("document.querySelector('#preview').naturalWidth") == 160
    expect(page.locator("#title .status")).to_have_text("completed", timeout=120_000)
    expect(page.locator("#progress")).to_be_hidden()
    # The charts load the finished run's 900-frame telemetry: allow for a loaded machine, as the run page test does.
    expect(page.locator("body")).to_have_attribute("data-charts", "0", timeout=30_000)


def test_delete_removes_the_runs_artifacts(env, page):
    c = env["client"]
    status, body = c.json("POST", "/api/runs", {**RUN, "episodes": 1, "duration_s": 0.5, "session": "browser-del"})
    run_id = body["run_id"]
    _wait_completed(c, run_id)
    _, d = c.json("GET", f"/api/runs/{run_id}")
    paths = [Path(env["stack"].out_dir, *a["key"].split("/")) for a in d["artifacts"]]
    assert paths and all(p.is_file() for p in paths)
    page.goto(f"{env['url']}/runs/{run_id}")
    expect(page.locator("#artifacts tbody tr")).to_have_count(len(paths))
    page.locator("#delete").click()
    page.locator("#delete").click()  # the second click confirms
    expect(page.locator("#deletions li")).to_have_count(len(paths), timeout=60_000)
    expect(page.locator("#artifacts del")).to_have_count(len(paths))
    assert not any(p.exists() for p in paths)


def test_new_run_form_shows_the_contract_error_then_runs_a_valid_request(env, page):
    page.goto(env["url"] + "/new")
    expect(page.locator("body")).to_have_attribute("data-loaded", "1")
    page.select_option("#scene", "cartpole")
    page.fill('input[name="render.width"]', "99999")
    page.click("#submit")
    err = page.locator('.err[data-for="render.width"]')
    expect(err).to_contain_text("4096")
    assert page.url.endswith("/new")
    for name, value in (("render.width", "96"), ("render.height", "64"), ("render.fps", "15"), ("duration_s", "0.5")):
        page.fill(f'input[name="{name}"]', value)
    page.select_option('select[name="render.quality"]', "fast")
    page.fill('input[name="session"]', "browser-form")
    page.click("#submit")
    page.wait_for_url("**/runs/*")
    expect(page.locator("#title .status")).to_have_text("completed", timeout=120_000)
    run_id = page.url.rsplit("/", 1)[-1]
    _, d = env["client"].json("GET", f"/api/runs/{run_id}")
    assert d["request"]["render"]["width"] == 96 and d["summary"]["session"] == "browser-form"


def test_new_run_form_takes_a_robot_zip_and_runs_it_again_from_stored_files(env, page, tmp_path):
    """A .zip of a robot whose meshes sit in a sibling folder: the form names the scene inside it; the
    files go to the scene-file store; the run is listed by its file's name; Run again needs no upload."""
    import zipfile

    from tests.support.scenes import SCENE, stl

    archive = tmp_path / "tetra.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("tetra/robot/bot.xml", SCENE.replace(b"tetra-bot", b"zip-bot"))
        z.writestr("tetra/meshes/tet.stl", stl(8.0))
        z.writestr("tetra/robot/other.xml", b"<mujoco/>")
    page.goto(env["url"] + "/new")
    expect(page.locator("body")).to_have_attribute("data-loaded", "1")
    expect(page.locator("#caps")).to_contain_text("per file")
    page.set_input_files('input[name="scene_zip"]', str(archive))
    for name, value in (("render.width", "96"), ("render.height", "64"), ("render.fps", "10"), ("duration_s", "0.5")):
        page.fill(f'input[name="{name}"]', value)
    page.select_option('select[name="render.quality"]', "fast")
    page.click("#submit")  # two MJCF files in the zip: the form asks which one is the scene
    expect(page.locator('.err[data-for="scene_path"]')).to_contain_text("name the scene")
    page.fill('input[name="scene_path"]', "tetra/robot/bot.xml")
    page.click("#submit")
    page.wait_for_url("**/runs/*")
    expect(page.locator("#title .status")).to_have_text("completed", timeout=120_000)
    run_id = page.url.rsplit("/", 1)[-1]
    _, d = env["client"].json("GET", f"/api/runs/{run_id}")
    assert d["request"]["scene"] == "tetra/robot/bot.xml"
    assert set(d["request"]["files"]) == {"tetra/robot/bot.xml", "tetra/meshes/tet.stl"}
    assert d["summary"]["scene"] == "bot.xml"
    page.screenshot(path=str(env["shots"] / "ui-robot-upload.png"), full_page=False)
    page.click("#again")
    page.wait_for_url("**/new?from=*")
    expect(page.locator("#scene")).to_have_value("tetra/robot/bot.xml")
    page.click("#submit")
    page.wait_for_url("**/runs/*")
    expect(page.locator("#title .status")).to_have_text("completed", timeout=120_000)
    expect(page.locator("#identical")).to_contain_text("byte-identical (sha256")


def test_run_again_prefills_the_form_and_the_same_seed_gives_the_same_video(env, page):
    page.goto(f'{env["url"]}/runs/{env["run"]}')
    expect(page.locator("body")).to_have_attribute("data-loaded", "1")
    page.click("#again")
    page.wait_for_url("**/new?from=*")
    expect(page.locator("#from")).to_contain_text("byte-identical")
    expect(page.locator('input[name="seed"]')).to_have_value(str(RUN["seed"]))
    expect(page.locator('input[name="render.width"]')).to_have_value("160")
    page.fill('input[name="episodes"]', "1")
    page.click("#submit")
    page.wait_for_url("**/runs/*")
    expect(page.locator("#title .status")).to_have_text("completed", timeout=120_000)
    expect(page.locator("#identical")).to_contain_text("byte-identical (sha256")
    expect(page.locator("#identical")).to_contain_text(env["run"])


def test_record_next_episode_on_a_live_recorder_yields_that_episodes_video(env, page, tmp_path):
    """A Gymnasium loop wrapped in simreel.gym.RecordVideo that records nothing by itself; the ui's
    button makes it record the next episode, applied at the episode boundary."""
    import queue
    import threading

    import gymnasium as gym  # the gym extra, installed by make install

    from simreel.gym import RecordVideo

    videos: queue.Queue = queue.Queue()
    stop = threading.Event()
    wrapper = RecordVideo(gym.make("InvertedPendulum-v5", render_mode="rgb_array", width=96, height=96), video_folder=str(tmp_path / "videos"),
                          episode_trigger=lambda e: False, nats_url=env["stack"].url, session="browser-rec",
                          on_video=lambda v: videos.put(v))  # a function: the wrapper deep-copies its arguments

    def loop() -> None:
        try:
            wrapper.reset(seed=1)
            while not stop.is_set():
                _, _, terminated, truncated, _ = wrapper.step(wrapper.action_space.sample())
                if terminated or truncated:
                    stop.wait(0.05)  # the rest of a training iteration
                    wrapper.reset()
        except Exception as e:  # noqa: BLE001 - the test reports it instead of waiting for a video
            videos.put(e)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        page.goto(env["url"] + "/")
        row = page.locator(f'tr[data-recorder="{wrapper.recorder_id}"]')
        expect(row).to_be_visible(timeout=60_000)
        assert wrapper.videos == [] and videos.empty()
        row.locator("button.record-next").click()
        expect(row.locator(".applied")).to_contain_text("record_next at episode", timeout=60_000)
        applied_at = int(row.locator(".applied").inner_text().rsplit(" ", 1)[-1])
        video = videos.get(timeout=120)
        assert not isinstance(video, Exception), video
        assert video["episode"] == applied_at and video["status"] == "completed" and video["frames"] > 1
        assert video["path"] and Path(video["path"]).is_file()
        assert videos.empty()
        # The recorded episode is a run like any other on the runs page.
        page.goto(env["url"] + "/?")
        expect(page.locator(f'tr[data-run="{video["run_id"]}"] .status')).to_have_text("completed")
    finally:
        stop.set()
        thread.join(timeout=30)
        wrapper.close()


def test_keep_rule_set_on_a_live_recorder_lists_discarded_episodes_with_the_rule(env, page, tmp_path):
    """A loop recording every episode; the ui gives it a keep rule, applied at the next episode
    boundary. Episodes the rule drops leave no video and show up as discarded, with the rule and the
    reason, on the runs page (filtered) and on their run page."""
    import threading

    import gymnasium as gym

    from simreel.gym import RecordVideo

    stop = threading.Event()
    errors: list[BaseException] = []
    wrapper = RecordVideo(gym.make("InvertedPendulum-v5", render_mode="rgb_array", width=96, height=96,
                                   max_episode_steps=6), video_folder=str(tmp_path / "videos"),
                          episode_trigger=lambda e: True, nats_url=env["stack"].url, session="browser-keep")

    def loop() -> None:
        try:
            wrapper.reset(seed=3)
            while not stop.is_set():
                _, _, terminated, truncated, _ = wrapper.step(wrapper.action_space.sample())
                if terminated or truncated:
                    stop.wait(0.1)
                    wrapper.reset()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        page.goto(env["url"] + "/")
        row = page.locator(f'tr[data-recorder="{wrapper.recorder_id}"]')
        expect(row).to_be_visible(timeout=60_000)
        # A rule the contract refuses is answered next to the field, and nothing is sent.
        row.locator("input.keep-rule").fill('{"rule": "worst", "k": 0}')
        row.locator("button.set-keep").click()
        expect(row.locator("input.keep-rule")).to_have_attribute("title", re.compile(r"\$\.keep\.k"), timeout=10_000)
        row.locator("input.keep-rule").fill('{"rule": "failures"}')
        row.locator("button.set-keep").click()
        expect(row.locator(".applied")).to_contain_text("keep failures from episode", timeout=60_000)
        applied_at = int(re.search(r"keep failures from episode (\d+)", row.locator(".applied").inner_text())[1])
        expect(row.locator("td").nth(3)).to_contain_text("keep failures")  # the trigger column says it too

        page.select_option("#f-keep", "discarded")
        first = page.locator("#runs tbody tr td.keep.discarded").first
        expect(first).to_have_text("discarded", timeout=120_000)
        expect(page.locator("#runs tbody td.keep:not(.discarded)")).to_have_count(0)
        page.screenshot(path=str(env["shots"] / "runs-discarded.png"), full_page=True)
        run_id = first.locator("xpath=..").get_attribute("data-run")

        page.goto(f"{env['url']}/runs/{run_id}")
        cell = page.locator("#episodes tbody tr td.keep")
        expect(cell).to_contain_text("discarded: failures: not terminated", timeout=30_000)
        assert cell.get_attribute("title") == "rule: failures"
        expect(page.locator("#tabs button")).to_have_count(0)  # no video to show
        page.screenshot(path=str(env["shots"] / "run-discarded.png"), full_page=True)
        page.select_option("#ep-keep", "kept")
        expect(page.locator("#episodes tbody tr")).to_have_count(0)
        expect(page.locator("#ep-count")).to_have_text("0 of 1 episodes")
    finally:
        stop.set()
        thread.join(timeout=30)
        wrapper.close()
    assert not errors, errors
    assert wrapper.discarded and all(v.episode >= applied_at for v in wrapper.discarded)
    assert all(v.kept is None for v in wrapper.videos if v.episode < applied_at)  # before the rule: every one kept
    assert all(v.kept for v in wrapper.videos if v.episode >= applied_at)


def test_new_run_with_a_keep_rule_shows_kept_and_discarded_episodes(env, page):
    page.goto(env["url"] + "/new")
    expect(page.locator("body")).to_have_attribute("data-loaded", "1")
    page.select_option("#scene", "cartpole")
    for name, value in (("episodes", "3"), ("render.width", "96"), ("render.height", "64"), ("render.fps", "15"),
                        ("duration_s", "0.5")):
        page.fill(f'input[name="{name}"]', value)
    page.select_option('select[name="policy"]', "random")
    page.select_option('select[name="render.quality"]', "fast")
    keep = page.locator('input[name="outputs.keep"]')
    keep.fill('{"rule": "worst"')
    page.click("#submit")
    expect(page.locator('.err[data-for="outputs.keep"]')).to_contain_text("not JSON")
    keep.fill('{"rule": "worst", "k": 0}')
    page.click("#submit")
    expect(page.locator('.err[data-for="outputs.keep"]')).to_contain_text(">= 1")  # the contract's own words
    keep.fill('{"rule": "worst", "k": 1}')
    page.click("#submit")
    page.wait_for_url("**/runs/*")
    expect(page.locator("#title .status")).to_have_text("completed", timeout=120_000)
    expect(page.locator("#episodes tbody tr[data-keep]")).to_have_count(3)
    expect(page.locator('#episodes tbody tr[data-keep="kept"]')).to_have_count(1)
    expect(page.locator("#tabs button")).to_have_count(1)  # the kept episode's video only
    page.select_option("#ep-keep", "discarded")
    expect(page.locator("#episodes tbody tr")).to_have_count(2)
    expect(page.locator("#episodes tbody td.keep").first).to_contain_text("is not among the 1 lowest")
    page.screenshot(path=str(env["shots"] / "run-keep-worst.png"), full_page=True)
