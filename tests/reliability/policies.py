"""A policy entrypoint the reliability tests put on the simulator's allow-list."""
from __future__ import annotations

import numpy as np


def push(model, *, seed: int, params: dict):
    """Push every actuator to a fixed fraction of its range (default 0.5 of the upper bound)."""
    level = float(params.get("level", 0.5))
    action = np.full(model.nu, level)
    return lambda m, d, t: action
