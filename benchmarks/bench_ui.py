"""The ui's page costs in a real headless Chromium (Debian's /usr/bin/chromium through Playwright).

Run page of a run with 10 episodes × 1,800 frames (60 s at 30 fps) with qpos, qvel and action
(HalfCheetah-sized: 9 + 9 + 6 numbers per frame):
- time to the first paint with the charts (navigation start → the frame after uPlot drew them), and
  bytes transferred, side by side with the raw telemetry.jsonl a file-based viewer would download;
- cursor cost per video frame while the video plays (our overlay line, moved per presented frame),
  side by side with uPlot's own setCursor for the same frames (the usual way to follow a time);
- dropped video frames while playing with the charts, side by side with the same video alone.
Runs page: first paint with 10,000 runs in the index, side by side with 100 runs.

    python -m benchmarks.bench_ui [--json] [--play-s 10]

The ui app runs in this process with its read model filled directly (no NATS: this measures the
pages, not the event log) and a LocalStore holding a real H.264 MP4 per episode.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from simreel.contract import events as ev
from simreel.stack.embedded import free_port
from simreel.media.mp4 import Mp4Writer
from simreel.services.ui.app import Ui, UiConfig
from simreel.services.ui.live import Live
from simreel.store.local import LocalStore

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required"]
FPS, FRAMES, EPISODES = 30, 1800, 10
W, H = 320, 240
RUN = "bench-ui-run"


def _video(path: Path) -> None:
    """60 s of moving gradient at 30 fps (content barely matters to the player)."""
    x = np.arange(W, dtype=np.uint16)[None, :, None]
    y = np.arange(H, dtype=np.uint16)[:, None, None]
    w = Mp4Writer(path, width=W, height=H, fps=FPS, preset="ultrafast")
    for k in range(FRAMES):
        frame = np.empty((H, W, 3), np.uint8)
        frame[..., 0:1] = (x + k) % 256
        frame[..., 1:2] = (y + 2 * k) % 256
        frame[..., 2] = 128
        w.write(frame)
    w.close()


def _telemetry(path: Path, rng: np.random.Generator) -> None:
    names = {"action": [f"a{i}" for i in range(6)], "qpos": [f"j{i}" for i in range(9)],
             "qvel": [f"j{i}" for i in range(9)]}
    with open(path, "w") as f:
        for ep in range(EPISODES):
            q = rng.normal(size=9)
            for k in range(FRAMES):
                q += rng.normal(scale=0.01, size=9)
                row = {"episode": ep, "frame": k, "video_t": k / FPS, "t": k / FPS, "step": k * 10,
                       "reward": float(rng.normal()), "action": rng.uniform(-1, 1, 6).round(6).tolist(),
                       "qpos": q.round(6).tolist(), "qvel": rng.normal(size=9).round(6).tolist()}
                if ep == 0 and k == 0:
                    row["names"] = names
                f.write(json.dumps(row, separators=(",", ":")) + "\n")


def build(root: Path, runs: int) -> Live:
    """A read model with `runs` finished runs; the first has real artifacts under root."""
    live = Live()
    rng = np.random.default_rng(0)
    base = f"simreel/bench/{RUN}"
    video = root / "video.mp4"
    if not video.exists():
        _video(video)
        _telemetry(root / "telemetry.jsonl", rng)
    events: list[ev.Event] = [
        ev.SimRequested(run_id=RUN, scene="cartpole", episodes=EPISODES, session="bench", ts=2e9),
        ev.SimStarted(run_id=RUN, attempt=1, scene="cartpole", episodes=EPISODES, frames_per_episode=[FRAMES] * EPISODES,
                      fps=FPS, width=W, height=H, cameras=[], physics_dt=0.002, gl_backend="egl", gl_renderer="bench",
                      session="bench", outputs=ev.OutputSpec())]
    for ep in range(EPISODES):
        key = f"{base}/{ep:04d}/episode-{ep:04d}.mp4"
        dest = root.joinpath(*key.split("/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            os.link(video, dest)
        events += [ev.EpisodeEnded(run_id=RUN, attempt=1, episode=ep, seed=ep, steps=FRAMES * 10, frames=FRAMES,
                                   sim_time_s=60, wall_s=1),
                   ev.VideoAvailable(run_id=RUN, attempt=1, session="bench", episode=ep, format="mp4", staged="x",
                                     frames=FRAMES, fps=FPS, duration_s=60, width=W, height=H, codec="libx264",
                                     bytes=dest.stat().st_size, sha256=f"v{ep}", encode_ms=1),
                   ev.ArtifactStored(run_id=RUN, kind="video", format="mp4", episode=ep, session="bench", key=key,
                                     url="", bytes=dest.stat().st_size, sha256=f"v{ep}", content_type="video/mp4")]
    key = f"{base}/all/telemetry.jsonl"
    dest = root.joinpath(*key.split("/"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        os.link(root / "telemetry.jsonl", dest)
    events.append(ev.ArtifactStored(run_id=RUN, kind="telemetry", format="jsonl", session="bench", key=key, url="",
                                    bytes=dest.stat().st_size, sha256="tel", content_type="application/x-ndjson"))
    events.append(ev.SimCompleted(run_id=RUN, attempt=1, episodes=EPISODES, frames=FRAMES * EPISODES, wall_s=60,
                                  session="bench", expected_artifacts=EPISODES + 1))
    for e in events:
        live.apply(e)
    for i in range(runs - 1):
        rid = f"r{i:05d}"
        live.apply(ev.SimRequested(run_id=rid, scene="boxes" if i % 2 else "cartpole", episodes=2, seed=i,
                                   session=f"s{i % 7}", tags={"k": str(i % 10)}, ts=1e9 + i))
        live.apply(ev.SimCompleted(run_id=rid, attempt=1, episodes=2, frames=60, wall_s=2, session=f"s{i % 7}",
                                   expected_artifacts=0))
    live.caught_up.set()
    return live


class Server:
    """The ui app on a free port, in a thread with its own event loop."""

    def __init__(self, live: Live, root: Path) -> None:
        from aiohttp import web

        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        ui = Ui(live, LocalStore(root), lambda e: asyncio.sleep(0), UiConfig(port=self.port))
        ready = threading.Event()

        async def start() -> None:
            self.runner = web.AppRunner(ui.app(), access_log=None, shutdown_timeout=1)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
            ready.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(start()), self.loop.run_forever()),
                                       daemon=True)
        self.thread.start()
        ready.wait(30)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


# The benchmark's own instruments; the pages as served carry none. A mark at the first frame painted
# after the charts (body[data-charts]) or the runs table (body[data-loaded]) are in the page.
PAINT_MARKS = """
(() => {
  const marks = {"data-charts": "charts-painted", "data-loaded": "runs-painted"}, done = new Set();
  new MutationObserver((records) => {
    for (const r of records) {
      const name = marks[r.attributeName];
      if (name && !done.has(name) && r.target === document.body) {
        done.add(name);
        requestAnimationFrame(() => performance.mark(name));
      }
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: Object.keys(marks) });
})();
"""

# Times each cursor move (a sync that shows a new frame) from outside the player.
CURSOR_TIMER = """() => { const p = simreel.player, sync = p.sync; p.cursorMs = [];
  p.sync = function (t) { const t0 = performance.now(), f = this.frame; sync.call(this, t);
    if (this.frame !== f && this.cursorMs.length < 100000) this.cursorMs.push(performance.now() - t0); }; }"""


def _transferred(page) -> int:
    return page.evaluate("""() => performance.getEntriesByType('navigation').concat(
        performance.getEntriesByType('resource')).reduce((n, e) => n + (e.transferSize || e.encodedBodySize || 0), 0)""")


def measure_run_page(ctx, url: str, play_s: float) -> dict:
    page = ctx.new_page()
    page.add_init_script(PAINT_MARKS)
    page.goto(f"{url}/runs/{RUN}")
    page.wait_for_function("performance.getEntriesByName('charts-painted').length > 0", timeout=60_000)
    first_paint = page.evaluate("performance.getEntriesByName('charts-painted')[0].startTime")
    tel_bytes = page.evaluate("""() => performance.getEntriesByType('resource').filter(
        (e) => e.name.includes('/telemetry')).reduce((n, e) => n + (e.transferSize || e.encodedBodySize), 0)""")
    page_bytes = _transferred(page)
    # Play with the charts: the overlay cursor follows every presented frame.
    page.evaluate(CURSOR_TIMER)
    quality = page.evaluate(f"""() => new Promise((ok) => {{ const v = document.querySelector('video');
        v.currentTime = 0; v.play().then(() => setTimeout(() => {{ v.pause(); const q = v.getVideoPlaybackQuality();
        ok({{totalVideoFrames: q.totalVideoFrames, droppedVideoFrames: q.droppedVideoFrames}}); }},
        {int(play_s * 1000)})); }})""")
    cursor = page.evaluate("simreel.player.cursorMs")
    # Baseline cursor: uPlot's own setCursor on every chart, for 1,800 consecutive frames.
    setcursor = page.evaluate("""() => { const p = simreel.player, out = [];
        for (let i = 0; i < p.t.length; i++) { const t0 = performance.now();
          for (const u of p.charts) u.setCursor({left: u.valToPos(p.t[i], 'x'), top: 10});
          out.push(performance.now() - t0); } return out; }""")
    charts = page.evaluate("simreel.player.charts.length")
    series = page.evaluate("simreel.player.series.length")
    # Baseline playback: the same video, charts removed.
    page.evaluate("simreel.player.clear()")
    alone = page.evaluate(f"""() => new Promise((ok) => {{ const v = document.querySelector('video');
        const q0 = v.getVideoPlaybackQuality(); v.currentTime = 0;
        v.play().then(() => setTimeout(() => {{ v.pause(); const q = v.getVideoPlaybackQuality();
          ok({{totalVideoFrames: q.totalVideoFrames - q0.totalVideoFrames,
              droppedVideoFrames: q.droppedVideoFrames - q0.droppedVideoFrames}}); }}, {int(play_s * 1000)})); }})""")
    page.close()
    return {"first_paint_ms": round(first_paint, 1), "page_bytes": page_bytes, "telemetry_bytes": tel_bytes,
            "charts": charts, "series": series, "cursor_frames": len(cursor), "cursor_ms": _stats(cursor),
            "setcursor_ms": _stats(setcursor), "played_with_charts": quality, "played_alone": alone}


def measure_runs_page(ctx, url: str) -> dict:
    page = ctx.new_page()
    page.add_init_script(PAINT_MARKS)
    page.goto(url + "/")
    page.wait_for_function("performance.getEntriesByName('runs-painted').length > 0", timeout=60_000)
    out = {"first_paint_ms": round(page.evaluate("performance.getEntriesByName('runs-painted')[0].startTime"), 1),
           "rows": page.locator("#runs tbody tr").count(), "bytes": _transferred(page)}
    page.close()
    return out


def _stats(xs: list[float]) -> dict:
    if not xs:
        return {}
    s = sorted(xs)
    return {"median": round(statistics.median(s), 4), "p99": round(s[int(0.99 * (len(s) - 1))], 4),
            "max": round(s[-1], 4), "n": len(s)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--play-s", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=10_000)
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="simreel-bench-ui-"))
    raw_jsonl = None
    results: dict = {"machine": f"{platform.node()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(root / "profile"), executable_path=CHROMIUM, args=FLAGS,
                                                   headless=True, bypass_csp=True,
                                                   viewport={"width": 1280, "height": 860})
        try:
            for n in (100, a.runs):  # baseline first: a small index
                server = Server(build(root, n), root)
                try:
                    results[f"runs_page_{n}"] = measure_runs_page(ctx, server.url)
                    if n == a.runs:
                        results["run_page"] = measure_run_page(ctx, server.url, a.play_s)
                finally:
                    server.stop()
        finally:
            ctx.close()
    raw_jsonl = (root / "telemetry.jsonl").stat().st_size
    results["raw_telemetry_jsonl_bytes"] = {"whole_run": raw_jsonl, "one_episode": raw_jsonl // EPISODES}
    if a.json:
        print(json.dumps(results))
    else:
        rp = results["run_page"]
        print(f"run page, 10 × {FRAMES} frames, {rp['series']} series in {rp['charts']} charts: first chart paint "
              f"{rp['first_paint_ms']} ms; {rp['page_bytes']:,} bytes in all, telemetry {rp['telemetry_bytes']:,} "
              f"(raw jsonl of the episode: {raw_jsonl // EPISODES:,}, of the run: {raw_jsonl:,})")
        print(f"cursor per frame: overlay {rp['cursor_ms']} vs uPlot setCursor {rp['setcursor_ms']}")
        print(f"playing {a.play_s:.0f} s: with charts {rp['played_with_charts']}, alone {rp['played_alone']}")
        for n in (100, a.runs):
            r = results[f"runs_page_{n}"]
            print(f"runs page with {n:,} runs: first paint {r['first_paint_ms']} ms, {r['rows']} rows, {r['bytes']:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
