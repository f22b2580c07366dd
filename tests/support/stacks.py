"""A real stack (nats-server + the services as processes) for one test module, with its own settings."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from simreel.stack.embedded import Stack


@contextlib.contextmanager
def running_stack(base: Path, **env: str) -> Iterator[Stack]:
    """Started under `base` with these SIMREEL_* settings on top of the environment; always stopped."""
    s = Stack(data_dir=base / "data", out_dir=base / "out", env={**os.environ, **env})
    s.start()
    try:
        yield s
    finally:
        s.stop()
