"""`keep=` for the recorders: each candidate's outcome goes through one Keeper when its recording ends,
and each decision, when it falls, is published for that recording's run (EpisodeKept / EpisodeDiscarded),
after the run's own events. The encoder holds a candidate's videos until then; the uploader stores or
deletes them (docs/events.md, "Keep rules").
"""
from __future__ import annotations

from typing import Any

import msgspec
from gymnasium import logger as gym_logger

from simreel.contract import events as ev
from simreel.contract import keep as keeping
from simreel.recorder import RecordedRun, RecorderThread
from simreel.recorder.run import ATTEMPT
from simreel.transport.run_publisher import decision_event


def keep_outputs(outputs: ev.OutputSpec | None, keep: Any) -> ev.OutputSpec:
    """The recorder's OutputSpec with its keep rule announced (for a callable: a "producer" rule), so
    the encoder holds each candidate's videos until the recorder's decision."""
    spec = msgspec.structs.replace(outputs or ev.OutputSpec(), keep=keeping.wire_rule(keep))
    return msgspec.convert(msgspec.to_builtins(spec), ev.OutputSpec)  # the limits, and per-episode layout


class Candidates:
    """The keep decisions of one stream of recordings (a RecordVideo, a sub-env, SB3's clips)."""

    def __init__(self, rule: Any, recorder: RecorderThread) -> None:
        self.keeper = keeping.Keeper(rule)
        self.recorder = recorder
        self._runs: dict[int, RecordedRun] = {}

    @property
    def held(self) -> int:
        """Candidates waiting for a worst/best group to close (at most the rule's k)."""
        return len(self._runs)

    def ended(self, run: RecordedRun, outcome: keeping.Outcome) -> None:
        """The candidate's recording ended (its End is queued): decide what can be decided now."""
        run.awaiting_decision = True
        self._runs[outcome.index] = run
        try:
            decisions = self.keeper.push(outcome)
        except Exception as e:  # noqa: BLE001 - a bug in the user's rule must not lose the video
            gym_logger.warn(f"keep= raised {type(e).__name__}: {e}; episode {outcome.index} is kept")
            decisions = [keeping.Decision(outcome, True, self.keeper.text, f"the keep rule raised {type(e).__name__}")]
        self._send(decisions)

    def close(self) -> None:
        """No more candidates: decide every one still held."""
        self._send(self.keeper.close())

    def _send(self, decisions: list[keeping.Decision]) -> None:
        for d in decisions:
            run = self._runs.pop(d.outcome.index)
            run.decision = d
            self.recorder.decide(run, decision_event(run.run_id, ATTEMPT, self.recorder.session, 0, d))
