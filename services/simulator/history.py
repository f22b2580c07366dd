"""What a request does when its run id already has events: run, nothing (already handled), or refuse
it as a duplicate. A run id is used once; JetStream redelivers a request whose simulator died."""
from __future__ import annotations

from typing import Literal

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.transport.bus import Delivery, HandlerBus

Verdict = Literal["run", "done", "duplicate"]


async def run_history(bus: HandlerBus, run_id: str) -> dict[str, int]:
    """Stream sequence of the last SimStarted / SimCompleted / SimFailed of the run, by kind."""
    found: dict[str, int] = {}
    for kind, event_type in (("started", ev.SimStarted), ("completed", ev.SimCompleted), ("failed", ev.SimFailed)):
        last = await bus.last_event(subjects.of_run(event_type, run_id))
        if last is not None:
            found[kind] = last.seq
    return found


def judge_history(history: dict[str, int], delivery: Delivery) -> Verdict:
    """The verdict on a request whose run id already has events.

    A first delivery of a message for a run that already has a story is a duplicate (published after
    JetStream's 2-minute duplicate window, or with another event id). A redelivery (a simulator died
    mid-run, attempt n+1) sees events newer than its own message: it runs again, unless its earlier
    attempt already finished (completed or failed) and only the ack was lost. Events older than the
    message belong to an earlier request: duplicate.
    """
    if delivery.attempt <= 1 or any(seq < delivery.stream_seq for seq in history.values()):
        return "duplicate"
    last = max(history, key=history.get)
    return "done" if last in ("completed", "failed") else "run"


def duplicate_reason(req: ev.SimRequested, history: dict[str, int], delivery: Delivery) -> str:
    kinds = ", ".join(f"Sim{k.capitalize()} (seq {seq})" for k, seq in sorted(history.items()))
    return (f"duplicate SimRequested for run {req.run_id!r} (stream seq {delivery.stream_seq}): the run "
            f"already has {kinds} from an earlier request; a run id is used once - submit with a new run_id")


def duplicate_dead_letter(req: ev.SimRequested, reason: str, delivery: Delivery) -> ev.DeadLettered:
    """Under run_id 'unknown': a dead letter under the run's own id would mark the original run failed."""
    return ev.DeadLettered.of(f"simulator-{delivery.stream_seq}", service="simulator", subject=delivery.subject,
                              reason=reason, deliveries=delivery.attempt, payload=ev.encode(req))
