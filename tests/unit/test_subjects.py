"""Subject names are written and read in one place."""
import pytest

from simreel.contract import events as ev
from simreel.contract import subjects


def test_frames_subjects_round_trip():
    s = subjects.frames("run-1", 2, 7)
    assert subjects.parse_frames(s) == subjects.FramesSubject("run-1", "2", "7")


@pytest.mark.parametrize("subject", ["simreel.frames.r.1", "simreel.evt.sim.started.r", "simreel.frames.r.1.0.x",
                                     "other.frames.r.1.0"])
def test_anything_else_is_not_a_frames_subject(subject):
    assert subjects.parse_frames(subject) is None


def test_per_run_and_all_runs_subjects_agree_with_where_events_are_published():
    e = ev.SimStarted(run_id="r9", attempt=1, scene="s", episodes=1, frames_per_episode=[1], fps=10, width=16,
                      height=16, cameras=[], physics_dt=0.01, gl_backend="", gl_renderer="", session="s",
                      outputs=ev.OutputSpec())
    assert subjects.subject_for(e) == subjects.of_run(ev.SimStarted, "r9")
    assert subjects.all_of(ev.SimStarted) == "simreel.evt.sim.started.*"
    assert subjects.run_frames("r9", 1) == "simreel.frames.r9.1.>"


def test_subject_names_are_written_only_in_subjects():
    """Every other module names subjects through simreel.contract.subjects, so a rename has one place to go."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    literal = re.compile(r"""f?["']simreel\.(evt|frames)[.>"']""")
    found = [f"{p.relative_to(root)}:{n}" for p in [*(root / "libs").rglob("*.py"), *(root / "services").rglob("*.py")]
             if p.name != "subjects.py"
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if literal.search(line) and not line.lstrip().startswith("#")]
    assert found == []
