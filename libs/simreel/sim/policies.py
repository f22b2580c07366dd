"""Policies: what drives the actuators during an episode.

A policy is `policy(model, data, t) -> action` with `action.shape == (model.nu,)`; the rollout clips
it to the actuator control range and writes it to `data.ctrl` before each physics step. Policies may
keep state, so build a fresh one per episode (with that episode's seed).

Builtins: `zero`, `random` (seeded, held for `hold_s` so motion is visible instead of jitter),
`sine` (per-actuator phase offsets), `actions` (a recorded action sequence). Anything else is
`entrypoint:module:function`, or `file:<path>:function` for a Python file shipped with the request
(by content, like scene files), each allowed only when listed in the service's allow-list (DESIGN §7;
a file by its digest, `file:<sha256>`): the function is a factory `make(model, *, seed, params) ->
policy`, called once per episode, so it is where a trained checkpoint is loaded (once, then cached).
"""
from __future__ import annotations

import hashlib
import importlib
import math
import sys
import types
from collections.abc import Callable, Collection, Mapping
from typing import Any

import mujoco
import numpy as np

from simreel.sim.errors import PolicyError

__all__ = ["Policy", "PolicyError", "make_policy", "ctrl_bounds", "BUILTIN_POLICIES"]

Policy = Callable[[mujoco.MjModel, mujoco.MjData, float], np.ndarray]

BUILTIN_POLICIES = ("zero", "random", "sine", "actions")
_ENTRY = "entrypoint:"
_FILE = "file:"
_FILE_MODULES: dict[str, types.ModuleType] = {}
_EPS = 1e-9


def ctrl_bounds(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    """Per-actuator (low, high): the ctrlrange where the actuator is limited, else [-1, 1]."""
    limited = np.asarray(model.actuator_ctrllimited, dtype=bool).reshape(-1)
    rng = np.asarray(model.actuator_ctrlrange, dtype=float).reshape(-1, 2)
    low = np.where(limited, rng[:, 0], -1.0)
    high = np.where(limited, rng[:, 1], 1.0)
    return low, high


def _params(name: str, params: Mapping[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    params = dict(params or {})
    unknown = set(params) - set(defaults)
    if unknown:
        raise PolicyError(
            f"policy {name!r}: unknown parameter(s) {sorted(unknown)}; accepted: {sorted(defaults) or 'none'}"
        )
    return {**defaults, **params}


def _positive(name: str, key: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise PolicyError(f"policy {name!r}: {key} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise PolicyError(f"policy {name!r}: {key} must be > 0, got {value!r}")
    return v


def _zero(model: mujoco.MjModel, seed: int, params: Mapping[str, Any] | None) -> Policy:
    _params("zero", params, {})
    action = np.zeros(model.nu)
    return lambda m, d, t: action


def _random(model: mujoco.MjModel, seed: int, params: Mapping[str, Any] | None) -> Policy:
    p = _params("random", params, {"hold_s": 0.1})
    hold = _positive("random", "hold_s", p["hold_s"])
    rng = np.random.default_rng(seed)
    low, high = ctrl_bounds(model)
    state = {"slot": -1, "action": np.zeros(model.nu)}

    def policy(m: mujoco.MjModel, d: mujoco.MjData, t: float) -> np.ndarray:
        slot = math.floor(t / hold + _EPS)
        if slot != state["slot"]:
            state["slot"] = slot
            state["action"] = rng.uniform(low, high)
        return state["action"]

    return policy


def _sine(model: mujoco.MjModel, seed: int, params: Mapping[str, Any] | None) -> Policy:
    p = _params("sine", params, {"amplitude": 0.8, "frequency_hz": 0.5})
    amp = float(p["amplitude"])
    if not 0 <= amp <= 1:
        raise PolicyError(f"policy 'sine': amplitude is a fraction of the control range, 0..1, got {amp}")
    omega = 2 * math.pi * _positive("sine", "frequency_hz", p["frequency_hz"])
    low, high = ctrl_bounds(model)
    center, half = (low + high) / 2, (high - low) / 2
    phase = 2 * math.pi * np.arange(model.nu) / max(model.nu, 1)
    out = np.zeros(model.nu)

    def policy(m: mujoco.MjModel, d: mujoco.MjData, t: float) -> np.ndarray:
        np.sin(omega * t + phase, out=out)
        out[:] = center + amp * half * out
        return out

    return policy


def _actions(model: mujoco.MjModel, seed: int, params: Mapping[str, Any] | None) -> Policy:
    p = _params("actions", params, {"actions": None, "hold_s": 0.1})
    hold = _positive("actions", "hold_s", p["hold_s"])
    try:
        rows = np.asarray(p["actions"], dtype=float)
    except (TypeError, ValueError):
        raise PolicyError("policy 'actions': params.actions must be a list of number lists") from None
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] != model.nu:
        raise PolicyError(
            f"policy 'actions': params.actions must be a non-empty list of rows of {model.nu} numbers "
            f"(one per actuator), got shape {rows.shape}"
        )
    if not np.isfinite(rows).all():
        raise PolicyError("policy 'actions': actions contain NaN or infinity")

    def policy(m: mujoco.MjModel, d: mujoco.MjData, t: float) -> np.ndarray:
        return rows[min(math.floor(t / hold + _EPS), len(rows) - 1)]

    return policy


_FACTORIES = {"zero": _zero, "random": _random, "sine": _sine, "actions": _actions}


def _entrypoint(spec: str, model: mujoco.MjModel, seed: int, params: Mapping[str, Any] | None,
                allow: Collection[str]) -> Policy:
    target = spec[len(_ENTRY):]
    if spec not in allow and target not in allow:
        raise PolicyError(
            f"policy {spec!r} is not in the policy allow-list of this simulator; "
            "ask the operator to add it (service config `policy_allow`)"
        )
    module_name, _, func_name = target.partition(":")
    if not module_name or not func_name:
        raise PolicyError(f"policy {spec!r}: expected 'entrypoint:package.module:function'")
    try:
        factory = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as e:
        raise PolicyError(f"policy {spec!r} cannot be imported: {e}") from None
    return _built(spec, factory, model, seed, params)


def _built(spec: str, factory: Callable, model: mujoco.MjModel, seed: int,
           params: Mapping[str, Any] | None) -> Policy:
    """A user's factory called for one episode; whatever it raises or returns wrong names the policy."""
    try:
        policy = factory(model, seed=seed, params=dict(params or {}))
    except Exception as e:
        raise PolicyError(f"policy {spec!r} factory failed: {type(e).__name__}: {e}") from None
    if not callable(policy):
        raise PolicyError(f"policy {spec!r}: factory returned {type(policy).__name__}, expected a callable")
    return policy


def file_policy_parts(spec: str) -> tuple[str, str] | None:
    """`file:<path>:<function>` -> (path, function); None for other policies."""
    if not spec.startswith(_FILE):
        return None
    path, _, func = spec[len(_FILE):].rpartition(":")
    return (path, func) if path and func.isidentifier() else None


def _file_module(source: bytes, path: str) -> types.ModuleType:
    """The module of a shipped policy file, executed once per content (a checkpoint it loads at
    import stays loaded for every later episode)."""
    digest = hashlib.sha256(source).hexdigest()
    module = _FILE_MODULES.get(digest)
    if module is None:
        module = types.ModuleType(f"simreel_policy_{digest[:16]}")
        module.__file__ = path
        sys.modules[module.__name__] = module
        try:
            exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102 - allow-listed by digest
        except Exception as e:
            del sys.modules[module.__name__]
            raise PolicyError(f"policy file {path!r} failed to load: {type(e).__name__}: {e}") from None
        _FILE_MODULES[digest] = module
    return module


def _file(spec: str, model: mujoco.MjModel, seed: int, params: Mapping[str, Any] | None,
          allow: Collection[str], source: bytes | None) -> Policy:
    parts = file_policy_parts(spec)
    if parts is None:
        raise PolicyError(f"policy {spec!r}: expected 'file:<path>:function'")
    if source is None:
        raise PolicyError(f"policy {spec!r}: the file is not among the request's files")
    path, func = parts
    if f"file:{hashlib.sha256(source).hexdigest()}" not in allow:
        raise PolicyError(
            f"policy file {path!r} is not in the policy allow-list of this simulator (entries 'file:<sha256>'); "
            "ask the operator to add it, or run it with `simreel run`, whose own stack allows its policy")
    factory = getattr(_file_module(source, path), func, None)
    if not callable(factory):
        raise PolicyError(f"policy file {path!r} has no function {func!r}")
    return _built(spec, factory, model, seed, params)


def make_policy(
    name: str,
    model: mujoco.MjModel,
    *,
    seed: int,
    params: Mapping[str, Any] | None = None,
    allow: Collection[str] = (),
    source: bytes | None = None,
) -> Policy:
    """Build a policy for one episode. `allow` lists the permitted `entrypoint:...` policies (either
    the full string or just `module:function`) and policy files (`file:<sha256>`); `source` is the
    content of a `file:` policy."""
    if name in _FACTORIES:
        return _FACTORIES[name](model, int(seed), params)
    if name.startswith(_ENTRY):
        return _entrypoint(name, model, int(seed), params, allow)
    if name.startswith(_FILE):
        return _file(name, model, int(seed), params, allow, source)
    raise PolicyError(
        f"unknown policy {name!r}; use one of {', '.join(BUILTIN_POLICIES)} "
        "or an allow-listed 'entrypoint:module:function' or 'file:<path>:function'"
    )
