"""Free cameras for engines that only render the model's own cameras.

A request may ask for MuJoCo's free camera (lookat / distance / azimuth / elevation), which OpenGL
renders through an MjvCamera. Batch renderers such as MuJoCo Warp render `<camera>` elements only, so
a free camera becomes a fixed world camera at the same pose and field of view, added to a copy of
the scene (MjSpec); physics is unchanged — a world camera has no mass and no joint.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np

from simreel.sim import loader
from simreel.sim.errors import SceneError
from simreel.sim.rollout import make_camera

__all__ = ["free_camera_pose", "fixed_cameras"]


def free_camera_pose(cam: mujoco.MjvCamera) -> tuple[np.ndarray, np.ndarray]:
    """(position, quaternion w-x-y-z) of a free camera, as mjv_updateCamera places it: looking along
    `forward` from `lookat - distance * forward`, up tilted by the elevation."""
    az, el = math.radians(cam.azimuth), math.radians(cam.elevation)
    forward = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    up = np.array([-math.sin(el) * math.cos(az), -math.sin(el) * math.sin(az), math.cos(el)])
    right = np.cross(forward, up)
    pos = np.asarray(cam.lookat, dtype=float) - cam.distance * forward
    frame = np.column_stack([right, up, -forward])  # a MuJoCo camera looks along its -z axis
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, frame.reshape(-1))
    return pos, quat


def fixed_cameras(model: mujoco.MjModel, cameras: Sequence[Any]) -> tuple[mujoco.MjModel, list[int]]:
    """(model, camera ids) rendering `cameras` (request camera specs) with model cameras only.

    The model is returned unchanged when every camera is already one of its own; otherwise a copy
    with one added world camera per free camera (the scene must have been loaded by
    simreel.sim.loader, which keeps its source)."""
    cams = [make_camera(model, c) for c in cameras]
    if all(c.type == mujoco.mjtCamera.mjCAMERA_FIXED for c in cams):
        return model, [int(c.fixedcamid) for c in cams]
    source = loader.source_of(model)
    if source is None:
        raise SceneError("a free camera needs the scene's source: load it with simreel.sim.loader, "
                         "or name one of the scene's cameras")
    spec = mujoco.MjSpec.from_file(str(source.path))
    wanted: list[tuple[str, int]] = []  # ("own", original id) or ("free", n-th added camera)
    for c in cams:
        if c.type == mujoco.mjtCamera.mjCAMERA_FIXED:
            wanted.append(("own", int(c.fixedcamid)))
            continue
        pos, quat = free_camera_pose(c)
        n = sum(1 for kind, _ in wanted if kind == "free")
        spec.worldbody.add_camera(name=f"{_PREFIX}{n}", pos=pos, quat=quat, fovy=float(model.vis.global_.fovy))
        wanted.append(("free", n))
    try:
        out = spec.compile()
    except ValueError as e:
        raise SceneError(f"cannot add the free camera to the scene: {e}") from None
    g, og = out.vis.global_, model.vis.global_
    g.offwidth, g.offheight = og.offwidth, og.offheight
    # Camera ids follow the body tree, so added world cameras can shift the ids of cameras on
    # bodies; the scene's own cameras keep their relative order, the added ones are found by name.
    names = [mujoco.mj_id2name(out, mujoco.mjtObj.mjOBJ_CAMERA, i) or "" for i in range(out.ncam)]
    own = [i for i, n in enumerate(names) if not n.startswith(_PREFIX)]
    return out, [own[k] if kind == "own" else names.index(f"{_PREFIX}{k}") for kind, k in wanted]


_PREFIX = "simreel_free_"
