"""What the drop-ins' constructors check and prepare alike, with Gymnasium's own messages: the render
mode, the video folder, and the logger `disable_logger` chooses."""
from __future__ import annotations

import os
from typing import Any

from gymnasium import logger as gym_logger

from simreel.runtime import log as logs


def check_render_mode(render_mode: str | None) -> None:
    if render_mode in {None, "human", "ansi"}:
        raise ValueError(
            f"Render mode is {render_mode}, which is incompatible with RecordVideo. "
            "Initialize your environment with a render_mode that returns an image, such as rgb_array."
        )


def prepare_video_folder(path: str) -> str:
    """The folder, absolute and created; Gymnasium's warning when it already exists."""
    folder = os.path.abspath(path)
    if os.path.isdir(folder):
        gym_logger.warn(
            f"Overwriting existing videos at {folder} folder "
            f"(try specifying a different `video_folder` for the `RecordVideo` wrapper if this is not desired)"
        )
    os.makedirs(folder, exist_ok=True)
    return folder


def drop_in_logger(name: str, disable_logger: bool) -> Any:
    """`simreel.<name>`'s logger; warnings and errors only with `disable_logger=True`, which promises a
    silent training loop (the quiet one is `simreel.gym`'s, whichever drop-in)."""
    return logs.quiet("simreel.gym") if disable_logger else logs.get(name)
