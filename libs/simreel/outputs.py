"""What a request will produce, computed the same way by the simulator (to announce it) and by
clients (to show progress and to know when a run is finished)."""
from __future__ import annotations

from . import events as ev


def video_outputs(req: ev.SimRequested | ev.SimStarted) -> int:
    """VideoAvailable count of a run: formats × (each episode and/or one concatenated file)."""
    outs = req.outputs
    per_episode = req.episodes if outs.layout in ("per-episode", "both") else 0
    concat = 1 if outs.layout in ("concat", "both") else 0
    return len(set(outs.formats)) * (per_episode + concat)


def expected_artifacts(req: ev.SimRequested | ev.SimStarted) -> int:
    """ArtifactStored count of a finished run: videos + scene.xml + report.json (+ telemetry.jsonl)."""
    return video_outputs(req) + 2 + (1 if req.outputs.telemetry else 0)
