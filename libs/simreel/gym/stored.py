"""What `close()` of every drop-in says when some videos were not stored."""
from __future__ import annotations

from gymnasium import logger as gym_logger

from simreel.recorder import RecordedRun


class RecordingError(RuntimeError):
    """Some videos could not be recorded or stored; `runs` says which and why."""

    def __init__(self, message: str, runs: list[RecordedRun]) -> None:
        super().__init__(message)
        self.runs = runs


def report_unstored(bad: list[RecordedRun], total: int, *, strict: bool, where: str = "",
                    runs: list[RecordedRun] | None = None) -> None:
    """Raise RecordingError (`strict`) or warn as Gymnasium does, naming each run of `bad` out of
    `total` videos; the error carries `runs` (default: `bad`)."""
    if not bad:
        return
    detail = "; ".join(f"{r.meta.get('name')}: {r.status}: {r.error}" for r in bad)
    message = f"{len(bad)} of {total} video(s) were not stored: {detail}{where}"
    if strict:
        raise RecordingError(message, bad if runs is None else runs)
    gym_logger.warn(message)
