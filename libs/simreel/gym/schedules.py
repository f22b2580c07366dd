"""Which episodes a drop-in records when its caller names no trigger. Each schedule carries its own
`description`, which is what a live recorder announces (simreel.capture.describe_trigger)."""
from __future__ import annotations

from typing import Any, Callable

Trigger = Callable[[int], bool] | None


def capped_cubic_video_schedule(episode_id: int) -> bool:
    """Gymnasium's default episode trigger, copied because `gymnasium.utils.save_video` cannot be
    imported without moviepy: episodes 0, 1, 8, 27, …, 729, then every 1000th."""
    if episode_id < 1000:
        return int(round(episode_id ** (1.0 / 3))) ** 3 == episode_id
    return episode_id % 1000 == 0


capped_cubic_video_schedule.description = "episodes 0, 1, 8, 27, …, 729, then every 1000th"  # type: ignore[attr-defined]


def every_episode(episode_id: int) -> bool:
    """The trigger of a recorder with `keep=` and no trigger: every episode is a candidate."""
    return True


every_episode.description = "every episode"  # type: ignore[attr-defined]


def default_triggers(episode_trigger: Trigger, step_trigger: Trigger, keep: Any) -> tuple[Trigger, Trigger]:
    """Gymnasium's rule (no trigger: the capped cubic schedule), except that a keep rule without an
    episode trigger makes every episode a candidate."""
    if keep is not None and episode_trigger is None:
        episode_trigger = every_episode
    if episode_trigger is None and step_trigger is None:
        episode_trigger = capped_cubic_video_schedule
    return episode_trigger, step_trigger
