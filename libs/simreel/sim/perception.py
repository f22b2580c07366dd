"""What a model tells about its depth and segmentation streams: clip planes and the object legend."""
from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np

from simreel.contract import events as ev
from simreel.contract import streams

__all__ = ["OBJECT_TYPES", "object_names", "perception", "preview_range", "clip_planes", "zbuffer_metres"]

# Object types a segmentation pixel can name (what mujoco.Renderer's type channel holds).
OBJECT_TYPES: dict[str, int] = {
    "geom": int(mujoco.mjtObj.mjOBJ_GEOM),
    "site": int(mujoco.mjtObj.mjOBJ_SITE),
    "tendon": int(mujoco.mjtObj.mjOBJ_TENDON),
    "skin": int(mujoco.mjtObj.mjOBJ_SKIN),
    "flex": int(mujoco.mjtObj.mjOBJ_FLEX),
}


def object_names(model: mujoco.MjModel) -> dict[str, list[str]]:
    """Names by id of every object a segmentation pixel can name ("" when unnamed)."""
    counts = {"geom": model.ngeom, "site": model.nsite, "tendon": model.ntendon, "skin": model.nskin,
              "flex": model.nflex}
    return {name: [mujoco.mj_id2name(model, objtype, i) or "" for i in range(int(counts[name]))]
            for name, objtype in OBJECT_TYPES.items() if counts[name]}


def clip_planes(model: mujoco.MjModel) -> tuple[float, float]:
    """The near and far planes mujoco.Renderer's depth is between (metres)."""
    extent = float(model.stat.extent)
    return float(model.vis.map.znear) * extent, float(model.vis.map.zfar) * extent


def zbuffer_metres(z: np.ndarray, model: mujoco.MjModel, *, orthographic: bool = False) -> np.ndarray:
    """MuJoCo's raw depth buffer as Gymnasium's `depth_array` gives it (0 at the near plane, 1 at the
    far one: MuJoCo's default mjDEPTH_ZERONEAR) → metres along the camera axis, as mujoco.Renderer
    gives them (it reads the buffer the other way round, mjDEPTH_ZEROFAR, and converts it itself)."""
    near, far = clip_planes(model)
    z64 = np.asarray(z, dtype=np.float64)
    if orthographic:
        out = near + z64 * (far - near)
    else:
        out = near / (1.0 - z64 * (1.0 - near / far))
    return out.astype(np.float32)


def preview_range(stored_depth: np.ndarray, clip: tuple[float, float]) -> tuple[float, float]:
    """The depth preview's colour range for a run: from the nearest to the farthest object in its first
    frame (background and what is beyond the format left out), to the centimetre; the clip planes when
    the first frame shows nothing."""
    q = stored_depth[stored_depth < streams.DEPTH_MAX]
    if q.size == 0:
        return clip
    lo = np.floor(float(q.min()) * streams.DEPTH_SCALE_M * 100) / 100
    hi = np.ceil(float(q.max()) * streams.DEPTH_SCALE_M * 100) / 100
    return float(lo), float(max(hi, lo + 0.01))


def perception(model: mujoco.MjModel | None, wanted: Sequence[str], *,
               preview_m: tuple[float, float] | None = None) -> ev.Perception | None:
    """SimStarted.perception for a run recording `wanted` streams (None for rgb alone)."""
    if list(wanted) == ["rgb"] or model is None:
        return None
    clip = clip_planes(model)
    return ev.Perception(depth_scale_m=streams.DEPTH_SCALE_M, depth_clip_m=clip, depth_preview_m=preview_m or clip,
                         objects=object_names(model) if "segmentation" in wanted else {},
                         object_types=dict(OBJECT_TYPES) if "segmentation" in wanted else {})
