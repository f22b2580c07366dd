"""Does a batched run store its videos as fast as the engine renders the batch? Is memory flat?

1. Bare batch rate: MuJoCo Warp (CPU device) steps and renders N worlds (one seed each, random
   policy) through BatchRunner with every frame dropped — the engine alone, kernel compile excluded.
2. The same N episodes as ONE request with `render.engine: "mjwarp"` on a real stack (nats-server,
   simulator, encoder, uploader as processes): frames/s of the simulator's loop (SimStarted → last
   EpisodeEnded, i.e. every frame published) and of the whole pipeline (SimStarted → last video
   stored). Ratio to (1); goal ≥ 0.9 for the stored videos.
   The bare rate is measured before and after the runs and averaged (the machine's load drifts).
3. Peak RSS (VmHWM) of the simulator process for the run at D and 4×D seconds: flat if bounded by
   worlds × frame in flight, not by episode length.

Measured in one run, side by side, because this machine is shared and noisy.

    python -m benchmarks.bench_batched [--worlds 16] [--duration 4] [--res 160x120] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from simreel.contract import events as ev  # noqa: E402
from simreel.client import Client  # noqa: E402
from simreel.runtime.config import NatsSettings  # noqa: E402
from simreel.stack.embedded import Stack  # noqa: E402

from benchmarks.bench_engines import half_cheetah  # noqa: E402


def bare(xml: str, worlds: int, width: int, height: int, fps: int, duration: float, quality: str) -> dict:
    from simreel.sim import engines, loader, policies
    from simreel.sim.batch import BatchRunner

    model = loader.load_model(xml, width=width, height=height)
    eng = engines.create("mjwarp", model, width=width, height=height, worlds=worlds, quality=quality,
                         options={"device": "cpu"})
    try:
        runner = BatchRunner(eng, fps=fps)
        seeds = list(range(worlds))
        t0 = time.perf_counter()
        s = runner.run(seeds=seeds, policies=[policies.make_policy("random", eng.model, seed=i) for i in seeds],
                       duration_s=duration, on_frame=lambda w, f: None)
        wall = time.perf_counter() - t0
    finally:
        eng.close()
    frames = sum(x.frames for x in s)
    return {"frames": frames, "wall_s": wall, "fps": frames / wall, "warmup_s": eng.info.warmup_s}


def _hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pipeline(xml: str, worlds: int, width: int, height: int, fps: int, duration: float, quality: str) -> dict:
    req = ev.SimRequested(scene=xml, episodes=worlds, duration_s=duration, policy="random",
                          render=ev.RenderSpec(width=width, height=height, fps=fps, quality=quality, engine="mjwarp",
                                               engine_options={"device": "cpu"}),
                          outputs=ev.OutputSpec(telemetry=False))
    env = {**os.environ, "SIMREEL_MAX_WORLDS": str(worlds)}
    with tempfile.TemporaryDirectory() as d, Stack(data_dir=Path(d) / "data", out_dir=Path(d) / "out",
                                                   services=["simulator", "encoder", "uploader"], env=env) as stack:
        marks: dict[str, float] = {}

        def on_event(e, state) -> None:
            now = time.time()
            if isinstance(e, ev.SimStarted):
                marks["started"] = now
            elif isinstance(e, ev.EpisodeEnded):
                marks["sim_done"] = now
            elif isinstance(e, ev.ArtifactStored) and e.kind == "video":
                marks["stored"] = now

        async def go():
            c = await Client.connect(NatsSettings(url=stack.url))
            try:
                return await c.run(req, timeout=3600, on_event=on_event)
            finally:
                await c.close()

        res = asyncio.run(go())
        if not res.ok:
            raise RuntimeError(f"batched run failed: {res.error}")
        hwm = _hwm_mib(stack.procs["simulator"][0].pid)
    frames = worlds * round(duration * fps)
    videos = sum(1 for a in res.artifacts if a.kind == "video")
    return {"frames": frames, "videos": videos,
            "sim_fps": frames / (marks["sim_done"] - marks["started"]),
            "stored_fps": frames / (marks["stored"] - marks["started"]),
            "simulator_hwm_mib": hwm}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worlds", type=int, default=16)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--res", default="160x120")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--quality", default="fast")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    width, height = (int(x) for x in a.res.split("x"))
    xml = Path(half_cheetah()).read_text()
    engine = bare(xml, a.worlds, width, height, a.fps, a.duration, a.quality)
    print(json.dumps({"bare": engine}), file=sys.stderr)
    run = pipeline(xml, a.worlds, width, height, a.fps, a.duration, a.quality)
    print(json.dumps({"pipeline": run}), file=sys.stderr)
    long = pipeline(xml, a.worlds, width, height, a.fps, 4 * a.duration, a.quality)
    print(json.dumps({"pipeline_4x": long}), file=sys.stderr)
    # The machine's load drifts: measure the engine alone again, after, and compare with the mean.
    engine_after = bare(xml, a.worlds, width, height, a.fps, a.duration, a.quality)
    print(json.dumps({"bare_after": engine_after}), file=sys.stderr)
    bare_fps = (engine["fps"] + engine_after["fps"]) / 2
    out = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "scene": "half_cheetah", "size": a.res, "fps": a.fps, "worlds": a.worlds, "duration_s": a.duration,
        "quality": a.quality, "bare": engine, "bare_after": engine_after, "bare_mean_fps": bare_fps,
        "pipeline": run, "pipeline_4x_duration": long,
        "ratio_sim_over_bare": run["sim_fps"] / bare_fps,
        "ratio_stored_over_bare": run["stored_fps"] / bare_fps,
        "ratio_stored_over_bare_4x_duration": long["stored_fps"] / bare_fps,
        "simulator_hwm_mib": {f"{a.duration:g}s": run["simulator_hwm_mib"],
                              f"{4 * a.duration:g}s": long["simulator_hwm_mib"],
                              "ratio": long["simulator_hwm_mib"] / run["simulator_hwm_mib"]},
    }
    print(json.dumps(out, indent=2))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
