"""Does recording slow the simulation loop? Is the simulator's memory flat in episode length?

1. Loop rate: the same scene, resolution and episode rendered (a) alone — EpisodeRunner in a thread,
   frames dropped — and (b) through simreel — the simulator's handler publishing every frame to a real
   nats-server while an encoder process encodes them. Ratio = rate(b) / rate(a); goal ≥ 0.95.
   Run (b) twice: encoder live during the run (it competes for this machine's cores), and encoder
   started after the run (frames wait in JetStream), which is what a separate encoder host gives;
   the latter once per frame compression (`--compression zstd,none`), side by side in each round.
2. Peak RSS (VmHWM) of a simulator process for a 10 s and a 60 s episode; goal: flat.

    python -m benchmarks.bench_sim_loop [--scene cartpole] [--width 640 --height 480] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from benchmarks.report import emit, machine  # noqa: E402
from simreel.contract import events as ev  # noqa: E402
from simreel.client import Client  # noqa: E402
from simreel.runtime.config import NatsSettings  # noqa: E402
from simreel.stack.embedded import Stack  # noqa: E402


_ALONE_CPU: dict[str, float] = {}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def render_alone(scene: str, width: int, height: int, fps: int, duration: float, quality: str) -> float:
    """Frames per second of the physics+render loop with nothing recorded (its CPU ms per frame, all
    threads of this process, in _ALONE_CPU)."""
    from simreel.sim import loader, policies
    from simreel.sim.rollout import EpisodeRunner

    model, _ = loader.resolve_scene(scene, {}, (), width, height)
    result: dict = {}

    def body() -> None:
        runner = EpisodeRunner(model, width=width, height=height, fps=fps, quality=quality)
        try:
            pol = policies.make_policy("random", model, seed=0)
            t0, c0 = time.perf_counter(), time.process_time()
            s = runner.run_episode(seed=0, policy=pol, duration_s=duration, max_steps=None, on_frame=lambda f: None)
            result["fps"] = s.frames / (time.perf_counter() - t0)
            _ALONE_CPU["cpu_ms_per_frame"] = 1000 * (time.process_time() - c0) / s.frames
        finally:
            runner.close()

    t = threading.Thread(target=body)
    t.start()
    t.join()
    return result["fps"]


def _hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def _run(url: str, req: ev.SimRequested, timeout: float = 1800) -> dict:
    c = await Client.connect(NatsSettings(url=url))
    try:
        started: dict = {}

        def on_event(e, state):
            if isinstance(e, ev.SimStarted):
                started["t"] = e.ts
            if isinstance(e, ev.EpisodeEnded):
                started["ended"] = e.ts

        res = await c.run(req, timeout=timeout, on_event=on_event)
        assert res.ok, res.error
        return {"sim_s": started["ended"] - started["t"], "result": res}
    finally:
        await c.close()


def _published_bytes(result) -> int | None:
    """FrameBatch bytes the simulator published (its report's timings)."""
    report = next((a for a in result.artifacts if a.kind == "report" and a.path), None)
    if report is None:
        return None
    return json.loads(Path(report.path).read_text())["timings"].get("frames_published_bytes")


def recorded(scene: str, width: int, height: int, fps: int, duration: float, quality: str, *,
             encoder_live: bool, compression: str = "zstd") -> dict:
    """Frames per second of the simulator's loop while every frame is published and encoded."""
    req = ev.SimRequested(scene=scene, duration_s=duration, policy="random",
                          render=ev.RenderSpec(width=width, height=height, fps=fps, quality=quality),
                          outputs=ev.OutputSpec(telemetry=False))
    services = ["simulator", "uploader"] + (["encoder"] if encoder_live else [])
    env = {**os.environ, "SIMREEL_FRAME_COMPRESSION": compression}
    with tempfile.TemporaryDirectory() as d, Stack(data_dir=Path(d) / "data", out_dir=Path(d) / "out",
                                                   services=services, env=env) as stack:
        if not encoder_live:
            # The encoder joins after the simulation: frames wait in JetStream meanwhile.
            async def go():
                c = await Client.connect(NatsSettings(url=stack.url))
                seen = {}
                sim_pid = stack.procs["simulator"][0].pid
                try:
                    rid = await c.submit(req)
                    async for e in c.events(rid):
                        if isinstance(e, ev.SimStarted):
                            seen["t"], seen["cpu0"] = e.ts, _cpu_s(sim_pid)
                        if isinstance(e, ev.EpisodeEnded):
                            seen["ended"], seen["cpu1"] = e.ts, _cpu_s(sim_pid)
                            break
                    stack.start_service("encoder")
                    res = await c.wait(rid, timeout=1800)
                    assert res.ok, res.error
                finally:
                    await c.close()
                return {"sim_s": seen["ended"] - seen["t"], "frames_bytes": _published_bytes(res),
                        "sim_cpu_s": seen["cpu1"] - seen["cpu0"]}
            out = asyncio.run(go())
        else:
            out = asyncio.run(_run(stack.url, req))
        sim_pid = stack.procs["simulator"][0].pid
        out["simulator_hwm_mib"] = _hwm_kib(sim_pid) / 1024
    frames = round(duration * fps)
    return {"fps": frames / out["sim_s"], "sim_s": out["sim_s"], "simulator_hwm_mib": out["simulator_hwm_mib"],
            "frames_bytes": out.get("frames_bytes"),
            "cpu_ms_per_frame": 1000 * out["sim_cpu_s"] / frames if "sim_cpu_s" in out else None}


def rss_for(scene: str, duration: float, width: int, height: int, fps: int) -> float:
    r = recorded(scene, width, height, fps, duration, "fast", encoder_live=True)
    return r["simulator_hwm_mib"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", default="cartpole")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--quality", default="fast")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--compression", default="zstd,none",
                   help="frame compression(s) to compare, comma-separated (encoder after the episode)")
    p.add_argument("--skip-live", action="store_true", help="leave out the encoder-live variant")
    p.add_argument("--skip-rss", action="store_true", help="leave out the 10 s / 60 s memory runs")
    a = p.parse_args(argv)
    compressions = [c.strip() for c in a.compression.split(",") if c.strip()]

    rows = []
    for i in range(a.repeat):
        alone = render_alone(a.scene, a.width, a.height, a.fps, a.duration, a.quality)
        row: dict = {"alone_fps": alone, "alone_cpu_ms_per_frame": _ALONE_CPU.get("cpu_ms_per_frame")}
        if not a.skip_live:
            live = recorded(a.scene, a.width, a.height, a.fps, a.duration, a.quality, encoder_live=True)
            row.update(recorded_fps_encoder_live=live["fps"], ratio_encoder_live=live["fps"] / alone)
        for c in compressions:
            later = recorded(a.scene, a.width, a.height, a.fps, a.duration, a.quality, encoder_live=False,
                             compression=c)
            row[f"recorded_fps_encoder_after_{c}"] = later["fps"]
            row[f"ratio_encoder_after_{c}"] = later["fps"] / alone
            row[f"simulator_cpu_ms_per_frame_{c}"] = later["cpu_ms_per_frame"]
            row[f"frames_bytes_per_frame_{c}"] = (later["frames_bytes"] / round(a.duration * a.fps)
                                                  if later["frames_bytes"] else None)
        rows.append(row)
        print(json.dumps(rows[-1]), file=sys.stderr)
    rss10 = rss60 = None
    if not a.skip_rss:
        rss10 = rss_for(a.scene, 10.0, 320, 240, a.fps)
        rss60 = rss_for(a.scene, 60.0, 320, 240, a.fps)
    out = {
        **machine(),
        "scene": a.scene, "size": f"{a.width}x{a.height}", "fps": a.fps, "duration_s": a.duration,
        "quality": a.quality, "runs": rows,
        "min_ratio_encoder_after": {c: min(r[f"ratio_encoder_after_{c}"] for r in rows) for c in compressions},
        "simulator_peak_rss_mib": ({"10s": rss10, "60s": rss60, "ratio_60_over_10": rss60 / rss10}
                                   if rss10 else None),
    }
    return emit(out, a.json)


if __name__ == "__main__":
    sys.exit(main())
