"""What a run should leave in the store, and what a stored video holds."""
from __future__ import annotations

from pathlib import Path

import av

from simreel.contract import events as ev


def mp4_frame_count(path: str | Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


def expected_keys(run: ev.SimRequested, prefix: str = "simreel") -> set[str]:
    """Object keys of a per-episode mp4 run with telemetry: videos, scene, report, telemetry."""
    base = f"{prefix}/{run.session}/{run.run_id}"
    keys = {f"{base}/{e:04d}/episode-{e:04d}.mp4" for e in range(run.episodes)}
    keys |= {f"{base}/all/scene.xml", f"{base}/all/report.json", f"{base}/all/telemetry.jsonl"}
    return keys
