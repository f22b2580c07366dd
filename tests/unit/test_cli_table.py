"""The artifact table `simreel run` prints: what a user wants per video, readable at 100 columns."""
import io
from pathlib import Path

from rich.console import Console

from simreel.contract import events as ev
from simreel.cli import artifact_table
from simreel.client import RunResult
from simreel.readmodels.projections import RunState

RUN = "3f2a9c41d5e84b0fa1c2d3e4f5a6b7c8"  # as long as a generated run id


def _result(out: Path) -> RunResult:
    state = RunState(RUN)
    folder = out / "simreel" / "default" / RUN
    for episode, name in ((0, "0000/episode-0000.mp4"), (1, "0001/episode-0001.mp4"), (None, "all/all.gif")):
        fmt = name.rsplit(".", 1)[1]
        video = ev.VideoAvailable(event_id=f"video-{RUN}-1-{episode}-{fmt}", run_id=RUN, attempt=1, session="default",
                                  episode=episode, format=fmt, staged="dir:x", frames=150, fps=30.0, duration_s=5.0,
                                  width=640, height=480, codec="h264", bytes=1_234_567, sha256="0" * 64,
                                  encode_ms=812.0)
        state.apply(video)
        state.apply(ev.ArtifactStored(run_id=RUN, kind="video" if fmt == "mp4" else "gif", format=fmt,
                                      episode=episode, session="default", key=f"simreel/default/{RUN}/{name}",
                                      url=f"file://{folder / name}", path=str(folder / name), bytes=1_234_567,
                                      sha256="0" * 64, content_type="video/mp4", source_event_id=video.event_id))
    state.apply(ev.ArtifactStored(run_id=RUN, kind="report", format="json", session="default",
                                  key=f"simreel/default/{RUN}/all/report.json", url="file:///x",
                                  path=str(folder / "all" / "report.json"), bytes=2_048, sha256="1" * 64,
                                  content_type="application/json"))
    return RunResult(run_id=RUN, status="completed", artifacts=list(state.artifacts.values()), state=state)


def test_the_table_fits_100_columns_with_whole_paths_and_video_facts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "simreel-out"
    buf = io.StringIO()
    Console(file=buf, width=100, color_system=None).print(artifact_table(_result(out), out))
    text = buf.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    for name in ("0000/episode-0000.mp4", "0001/episode-0001.mp4", "all/all.gif", "all/report.json"):
        assert sum(name in line for line in lines) == 1, text  # each file whole, on one line
    assert f"in simreel-out/simreel/default/{RUN}/" in text  # the run's folder, once
    assert str(tmp_path) not in text
    row = next(line for line in lines if "episode-0000.mp4" in line)
    for fact in ("150", "5.00 s", "30", "0.81 s", "1.2 MB"):
        assert fact in row, row
