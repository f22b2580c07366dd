"""What became of one recorded run, as the producer's thread sees it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from simreel.contract import events as ev


@dataclass
class RecordedRun:
    """Filled in by the recorder thread, read after RecorderThread.wait()/close()."""

    run_id: str
    meta: dict[str, Any] = field(default_factory=dict)  # the producer's own labels (name, episode, …)
    status: str = "recording"  # recording → storing → completed | failed | timeout
    frames: int = 0
    error: str | None = None
    artifacts: list[ev.ArtifactStored] = field(default_factory=list)
    ended_at: float | None = None  # time.monotonic() when the producer ended the run
    stored_at: float | None = None  # time.monotonic() when its last artifact was stored
    finished: bool = False
    # With a keep rule: True from the end of the episode until its decision is made (wait() does not
    # wait for such runs: a worst/best k decision may come only at close), then the decision.
    awaiting_decision: bool = False
    decision: Any = None  # simreel.contract.keep.Decision
    on_result: Callable[["RecordedRun"], None] | None = field(default=None, repr=False, compare=False)

    def artifact(self, kind: str, fmt: str | None = None) -> ev.ArtifactStored | None:
        for a in self.artifacts:
            if a.kind == kind and (fmt is None or a.format == fmt):
                return a
        return None

    @property
    def discarded(self) -> bool:
        return self.decision is not None and not self.decision.kept

    @property
    def store_latency_s(self) -> float | None:
        """From the producer ending the run to every artifact stored."""
        if self.ended_at is None or self.stored_at is None:
            return None
        return self.stored_at - self.ended_at
