"""Event ids that carry meaning (a request, an attempt's failure, a dead letter) are built by
constructors beside the events, and nowhere else."""
from __future__ import annotations

import re
from pathlib import Path

from simreel.contract import events as ev

ROOT = Path(__file__).resolve().parents[2]


def test_request_failure_and_dead_letter_ids():
    req = ev.SimRequested(run_id="r-1", scene="cartpole").with_request_id()
    assert req.event_id == "req-r-1" and req.run_id == "r-1"
    failed = ev.SimFailed.of("r-1", 2, "bad_request", "x" * 5000, field="render.width")
    assert (failed.event_id, failed.attempt, len(failed.message), failed.field) == ("failed-r-1-2", 2, 2000,
                                                                                   "render.width")
    dl = ev.DeadLettered.of("simulator-42", service="simulator", subject="simreel.evt.x", reason="bad",
                            run_id="not a run id", payload=b"\xff{" + b"a" * 300)
    assert (dl.event_id, dl.run_id, len(dl.payload_preview)) == ("dl-simulator-42", "unknown", 200)
    assert ev.DeadLettered.of("k", service="s", subject="t", reason="r", run_id="r-1").run_id == "r-1"
    assert ev.decode(ev.encode(dl)) == dl


def test_no_other_module_builds_these_ids():
    built = re.compile(r"""f?["'](req|failed|dl)-\{|ev\.(DeadLettered|SimFailed)\(|structs\.replace\([^)]*event_id""")
    found = [f"{p.relative_to(ROOT)}:{n}" for p in [*(ROOT / "libs").rglob("*.py"), *(ROOT / "services").rglob("*.py")]
             if p.name != "events.py" or p.parent.name != "contract"
             for n, line in enumerate(p.read_text().splitlines(), 1) if built.search(line)]
    assert found == []
