"""The depth stream of a Gymnasium MuJoCo env: which streams an env can give, the depth of the frame
it just rendered, and the Perception a clip with depth announces at its first frame."""
from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np

from simreel.contract import events as ev
from simreel.contract import streams as stream_planes


def check_streams(env: gym.Env, wanted: Sequence[str]) -> tuple[str, ...]:
    """The streams RecordVideo can record from `env`, or ValueError with the reason."""
    wanted = tuple(wanted)
    if problem := stream_planes.check_streams(wanted):
        raise ValueError(f"streams {wanted}: {problem}")
    if "segmentation" in wanted:
        raise ValueError("streams: 'segmentation' cannot be recorded from a Gymnasium env: its MuJoCo renderer "
                         "offers rgb_array and depth_array only (simreel run / SimRequested records segmentation "
                         "of MuJoCo scenes)")
    if "depth" in wanted and getattr(env.unwrapped, "mujoco_renderer", None) is None:
        raise ValueError(f"streams: 'depth' needs a Gymnasium MuJoCo env, whose renderer offers depth_array; "
                         f"{type(env.unwrapped).__name__} renders RGB frames only")
    if "depth" in wanted and env.render_mode != "rgb_array":
        raise ValueError(f"streams: 'depth' is read right after each frame is rendered, which needs "
                         f"render_mode='rgb_array' (the env has {env.render_mode!r})")
    return wanted


def depth_plane(env: gym.Env, size: tuple[int, int]) -> np.ndarray:
    """The depth of the frame (of `size`, width x height) env.render() just made, in metres as
    mujoco.Renderer gives them, quantised as every depth stream is. Read from the depth buffer of that
    very render (Gymnasium's renderer keeps its last viewer in `viewer`): the same pixels' depth at no
    render cost. Gymnasium's own `depth_array` renders again, in a second GL context (HalfCheetah:
    +83 % CPU per frame against +16 %, benchmarks/RESULTS.md); it is the fallback when the last
    render was not an offscreen one of this size."""
    import mujoco

    from simreel.sim import perception

    u = env.unwrapped
    r = u.mujoco_renderer
    viewer = getattr(r, "viewer", None)
    rect = getattr(viewer, "viewport", None)
    if rect is not None and hasattr(viewer, "con") and size == (rect.width, rect.height):
        viewer.make_context_current()
        zbuffer = np.empty((rect.height, rect.width), np.float32)
        mujoco.mjr_readPixels(None, zbuffer, rect, viewer.con)
        zbuffer = zbuffer[::-1]  # GL rows are bottom-up
    else:
        zbuffer = r.render("depth_array")
    cam = r.camera_id
    ortho = bool(u.model.cam_orthographic[cam]) if cam is not None and cam >= 0 else \
        bool(u.model.vis.global_.orthographic)
    return stream_planes.quantise_depth(perception.zbuffer_metres(zbuffer, u.model, orthographic=ortho))


def first_frame_perception(env: gym.Env, streams: Sequence[str], depth: np.ndarray) -> ev.Perception:
    """What a clip's streams mean; the depth preview's range is its first frame's."""
    from simreel.sim import perception

    model = env.unwrapped.model
    preview = perception.preview_range(depth, perception.clip_planes(model))
    return perception.perception(model, streams, preview_m=preview)
