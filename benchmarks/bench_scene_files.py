"""A real robot submitted twice, beside a builtin scene, on one stack: bytes uploaded, and seconds from
submit (pack + upload + publish, what `simreel run robot.xml` does before it waits) to SimStarted.

The robot is dm_control's `suite/dog.xml` (20 MB of meshes and a skin) from the dm-control wheel on
PyPI, unpacked as data (tests/support/corpus.py). Each submission is timed in a fresh client, rounds
alternate the scenes, and the simulator's cache hits and misses are read from its log.

    python -m benchmarks.bench_scene_files [--rounds 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.report import emit, machine
from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.client import Client
from simreel.runtime.config import Limits, NatsSettings
from simreel.stack.embedded import Stack
from simreel.transport.scenefiles import SceneFileStore
from simreel.sim.loader import load_tree
from simreel.sim.package import pack
from tests.support import corpus

RENDER = ev.RenderSpec(width=160, height=120, fps=10, quality="fast")


async def _submit(url: str, scene: str | Path) -> dict:
    """One submission as the CLI makes it; returns bytes uploaded and seconds to SimStarted."""
    async with await Client.connect(NatsSettings(url=url)) as client:
        t0 = time.perf_counter()
        package = None
        uploaded = 0
        if isinstance(scene, Path):
            limits = Limits()
            package = pack(scene, max_file_bytes=limits.max_scene_file_bytes, max_scene_bytes=limits.max_scene_bytes)
            if await SceneFileStore(client.bus).missing(package.files):
                load_tree(package.entry, package.local)  # the CLI's own check before it uploads
            uploaded = (await client.upload_scene(package)).uploaded_bytes
        req = ev.SimRequested(scene=package.entry if package else str(scene),
                              files=package.files if package else {}, duration_s=0.5, render=RENDER)
        started = asyncio.get_running_loop().create_future()

        async def follow() -> None:
            async for e in client.bus.follow(subjects.of_run(ev.SimStarted, req.run_id)):
                if isinstance(e, ev.SimStarted) and not started.done():
                    started.set_result(time.perf_counter())
                    return

        watcher = asyncio.create_task(follow())
        await client.submit(req)
        t1 = await asyncio.wait_for(started, 300)
        result = await client.wait(req.run_id, timeout=300)
        watcher.cancel()
        return {"uploaded_bytes": uploaded, "submit_to_started_s": round(t1 - t0, 3), "status": result.status,
                "scene_bytes": package.total_bytes if package else 0}


def _cache_stats(log_dir: Path) -> list[dict]:
    out = []
    for line in (log_dir / "simulator-0.log").read_text().splitlines():
        if '"scene_files_ready"' in line:
            d = json.loads(line)
            out.append({k: d[k] for k in ("cache_hits", "cache_misses", "fetched_bytes")})
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    dog = corpus.fetch("dm-control", "1.0.52") / "dm_control" / "suite" / "dog.xml"
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(data_dir=Path(tmp) / "data", out_dir=Path(tmp) / "out",
                      env={**os.environ, "SIMREEL_LOG_LEVEL": "info"})
        with stack:
            rows: dict[str, list[dict]] = {"builtin cartpole": [], "dog.xml first": [], "dog.xml again": []}
            asyncio.run(_submit(stack.url, "cartpole"))  # warm the stack (imports, first GL context)
            for r in range(a.rounds):
                rows["builtin cartpole"].append(asyncio.run(_submit(stack.url, "cartpole")))
                if r == 0:
                    rows["dog.xml first"].append(asyncio.run(_submit(stack.url, dog)))
                rows["dog.xml again"].append(asyncio.run(_submit(stack.url, dog)))
            cache = _cache_stats(stack.log_dir)
    summary = {}
    for name, rs in rows.items():
        secs = [x["submit_to_started_s"] for x in rs]
        summary[name] = {"runs": len(rs), "uploaded_bytes": [x["uploaded_bytes"] for x in rs],
                         "submit_to_started_s_median": round(statistics.median(secs), 3),
                         "submit_to_started_s": secs, "status": sorted({x["status"] for x in rs}),
                         "scene_bytes": rs[0]["scene_bytes"]}
    builtin = summary["builtin cartpole"]["submit_to_started_s_median"]
    summary["dog.xml again"]["minus_builtin_s"] = round(summary["dog.xml again"]["submit_to_started_s_median"]
                                                        - builtin, 3)
    return emit({**machine(), "scenes": summary, "simulator_cache": cache}, a.json)


if __name__ == "__main__":
    raise SystemExit(main())
