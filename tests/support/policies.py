"""Policy entrypoints the reliability tests put on the simulator's allow-list."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def push(model, *, seed: int, params: dict):
    """Push every actuator to a fixed fraction of its range (default 0.5 of the upper bound)."""
    level = float(params.get("level", 0.5))
    action = np.full(model.nu, level)
    return lambda m, d, t: action


def gated(model, *, seed: int, params: dict):
    """The built-in random policy, which stops at sim time `at_s` until the file `gate` exists.

    A fault test closes the gate to hold a run mid-episode for as long as it needs (no episode can end,
    no video can appear), acts, then opens it. The actions are those of `random` with the same seed, so
    a gated run and a clean one render the same frames. A gate left closed fails the episode after
    `max_wait_s` rather than holding a simulator thread forever.
    """
    from simreel.sim.policies import make_policy

    inner = make_policy("random", model, seed=seed)
    gate, at_s = Path(params["gate"]), float(params.get("at_s", 1.0))
    max_wait_s = float(params.get("max_wait_s", 120.0))

    def act(m, d, t):
        if t >= at_s and not gate.exists():
            deadline = time.monotonic() + max_wait_s
            while not gate.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gate {gate} not opened within {max_wait_s}s")
                time.sleep(0.02)
        return inner(m, d, t)

    return act


def boom(model, *, seed: int, params: dict):
    """Fails at the first step: a policy bug, as the simulator meets it."""

    def act(m, d, t):
        raise RuntimeError("deliberate policy failure")

    return act
