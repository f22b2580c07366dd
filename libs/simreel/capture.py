"""Which episodes a live recorder records: its constructor's trigger, overridden by capture controls
(CaptureControlRequested from a ui) that take effect at episode boundaries only.

Pure state, no I/O: the wrapper asks `decide(episode, trigger)` once per reset and nothing per step,
so a training loop without a ui pays nothing for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Trigger = Callable[[int], bool] | None


def describe_trigger(episode_trigger: Trigger, step_trigger: Trigger, video_length: int = 0) -> str:
    """A short human-readable trigger for RecorderAnnounced ("every 2 episodes" needs help from the
    user's lambda, which we cannot read; known schedules carry a `description`)."""
    parts = []
    if episode_trigger is not None:
        parts.append(getattr(episode_trigger, "description", None) or "custom episode_trigger")
    if step_trigger is not None:
        parts.append(getattr(step_trigger, "description", None) or "custom step_trigger")
    if video_length:
        parts.append(f"{video_length} frames per video")
    return "; ".join(parts)[:200] or "never"


@dataclass
class CaptureState:
    """The overrides in force. `every` counts from the boundary where it was applied."""

    every: int | None = None
    every_from: int = 0
    off: bool = False
    stopped: bool = False
    record_next: bool = False
    _asked: tuple[int, bool] | None = None  # the user's trigger is asked once per episode

    def _trigger(self, episode: int, trigger: Trigger) -> bool:
        if self._asked is None or self._asked[0] != episode:
            self._asked = (episode, bool(trigger and trigger(episode)))
        return self._asked[1]

    def apply(self, action: str, every: int | None, episode: int) -> None:
        if action == "record_next":
            self.record_next = True
        elif action == "every":
            self.every, self.every_from, self.off = every, episode, False
        elif action == "off":
            self.every, self.off = None, True
        elif action == "stop":
            self.stopped, self.record_next = True, False

    def peek(self, episode: int, trigger: Trigger) -> bool:
        """Would `episode` be recorded, without consuming a pending record_next."""
        if self.stopped:
            return False
        if self.record_next:
            return True
        if self.off:
            return False
        if self.every is not None:
            return (episode - self.every_from) % self.every == 0
        return self._trigger(episode, trigger)

    def decide(self, episode: int, trigger: Trigger) -> bool:
        """Is `episode` recorded? Consumes a pending record_next."""
        out = self.peek(episode, trigger)
        self.record_next = False
        return out

    def describe(self, base: str) -> str:
        if self.stopped:
            return "stopped"
        if self.off:
            return "off" + (" (next episode once)" if self.record_next else "")
        if self.every is not None:
            return f"every {self.every} episode{'s' if self.every > 1 else ''}"
        return base
