"""Which state channels a run records per frame, and their names, so telemetry charts are labelled.

MuJoCo scenes record `qpos`, `qvel` and `sensordata` (when the model has sensors); Gymnasium scenes the
flattened observation (`obs`). A request picks with `outputs.telemetry_fields` (null = these defaults,
[] = none). A frame's state is at most `limit` numbers: asking for more is an error naming the field
and the sizes; the defaults simply leave out what does not fit, and the run's report says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import mujoco

MUJOCO_FIELDS = ("qpos", "qvel", "sensordata")
GYM_FIELDS = ("obs",)

# Components of a free joint's and a ball joint's coordinates.
_FREE_QPOS = ("x", "y", "z", "qw", "qx", "qy", "qz")
_FREE_QVEL = ("vx", "vy", "vz", "wx", "wy", "wz")
_BALL_QPOS = ("qw", "qx", "qy", "qz")
_BALL_QVEL = ("wx", "wy", "wz")


class TelemetryFieldError(ValueError):
    field = "outputs.telemetry_fields"


class TelemetryTooLarge(TelemetryFieldError):
    """More numbers per frame than the limit."""


class TelemetryFieldUnavailable(TelemetryFieldError):
    """A field this kind of scene does not have (obs of an MJCF scene, qpos of a Gymnasium env)."""


@dataclass(frozen=True)
class StatePlan:
    fields: tuple[str, ...] = ()
    names: dict[str, list[str]] = field(default_factory=dict)  # every recorded vector channel's labels
    skipped: dict[str, int] = field(default_factory=dict)  # default channels left out, with their size


def _name(model: mujoco.MjModel, obj: mujoco.mjtObj, i: int, prefix: str) -> str:
    return mujoco.mj_id2name(model, obj, i) or f"{prefix}{i}"


def mujoco_names(model: mujoco.MjModel) -> dict[str, list[str]]:
    """Labels of qpos, qvel, sensordata and action (ctrl) entries, from joint / sensor / actuator names."""
    qpos: list[str] = [""] * model.nq
    qvel: list[str] = [""] * model.nv
    for j in range(model.njnt):
        name = _name(model, mujoco.mjtObj.mjOBJ_JOINT, j, "joint")
        kind = model.jnt_type[j]
        if kind == mujoco.mjtJoint.mjJNT_FREE:
            pos, vel = _FREE_QPOS, _FREE_QVEL
        elif kind == mujoco.mjtJoint.mjJNT_BALL:
            pos, vel = _BALL_QPOS, _BALL_QVEL
        else:
            pos = vel = ("",)
        a, b = model.jnt_qposadr[j], model.jnt_dofadr[j]
        for k, p in enumerate(pos):
            qpos[a + k] = f"{name}.{p}" if p else name
        for k, v in enumerate(vel):
            qvel[b + k] = f"{name}.{v}" if v else name
    sensors: list[str] = []
    for s in range(model.nsensor):
        name = _name(model, mujoco.mjtObj.mjOBJ_SENSOR, s, "sensor")
        dim = int(model.sensor_dim[s])
        sensors += [name] if dim == 1 else [f"{name}.{k}" for k in range(dim)]
    action = [_name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, i, "actuator") for i in range(model.nu)]
    return {"qpos": qpos, "qvel": qvel, "sensordata": sensors, "action": action}


def plan(available: dict[str, list[str]], requested: Sequence[str] | None, defaults: Sequence[str],
         limit: int) -> StatePlan:
    """Choose the channels to record. `available` maps each channel this scene has to its labels."""
    names = {k: v for k, v in available.items() if k == "action"}
    if requested is not None:
        unknown = [f for f in requested if f not in available or f == "action"]
        if unknown:
            raise TelemetryFieldUnavailable(f"telemetry field {unknown[0]!r} is not recorded for this scene "
                                    f"(choose from {', '.join(f for f in defaults if f in available) or 'none'})")
        fields = list(dict.fromkeys(requested))
        size = sum(len(available[f]) for f in fields)
        if size > limit:
            sizes = ", ".join(f"{f} {len(available[f])}" for f in fields)
            raise TelemetryTooLarge(f"telemetry fields are {size} numbers per frame ({sizes}); at most {limit} "
                                    "(SIMREEL_MAX_TELEMETRY_VALUES): ask for fewer fields")
        return StatePlan(tuple(fields), {**names, **{f: available[f] for f in fields}})
    fields, skipped, size = [], {}, 0
    for f in defaults:
        n = len(available.get(f, []))
        if not n:
            continue
        if size + n > limit:
            skipped[f] = n
            continue
        fields.append(f)
        size += n
    return StatePlan(tuple(fields), {**names, **{f: available[f] for f in fields}}, skipped)
