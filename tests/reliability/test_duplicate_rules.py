"""The simulator's rule for a request whose run id already has events (no processes needed)."""
from __future__ import annotations

import pytest

from simreel.transport.bus import Delivery
from simreel.services.simulator.history import judge_history


def d(attempt: int, seq: int) -> Delivery:
    return Delivery(subject="simreel.evt.sim.requested", attempt=attempt, stream_seq=seq)


@pytest.mark.parametrize("history, delivery, verdict", [
    # A first delivery for a run that already has a story: a duplicate request.
    ({"started": 12, "completed": 40}, d(1, 100), "duplicate"),
    # Even when the story is newer than the message (another simulator ran an earlier copy meanwhile).
    ({"started": 12}, d(1, 11), "duplicate"),
    # A redelivery whose own attempt died mid-run: run it again (attempt 2).
    ({"started": 12}, d(2, 10), "run"),
    ({"started": 30, "failed": 20}, d(3, 10), "run"),  # an older attempt failed... then a newer one started
    # A redelivery whose attempt finished but whose ack was lost: nothing to do.
    ({"started": 12, "completed": 40}, d(2, 10), "done"),
    ({"started": 12, "failed": 13}, d(2, 10), "done"),
    # A redelivered message older than events of another request: still a duplicate.
    ({"started": 5, "completed": 9}, d(2, 10), "duplicate"),
])
def test_history_verdicts(history, delivery, verdict):
    assert judge_history(history, delivery) == verdict
