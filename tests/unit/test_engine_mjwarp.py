"""MuJoCo Warp engine on the CPU device: batched worlds render real, right-sized, seed-dependent and
reproducible frames. Kernels are compiled once per run by the `mjwarp_warm` session fixture."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from simreel.sim import engines  # noqa: E402
from simreel.sim.batch import BatchRunner  # noqa: E402
from simreel.sim.loader import resolve_scene  # noqa: E402
from simreel.sim.policies import make_policy  # noqa: E402
from tests.conftest import MJWARP_SCENE, MJWARP_SIZE  # noqa: E402

W, H = MJWARP_SIZE


def rollout(seeds, *, duration_s=0.2, quality="fast", cameras=(None,)):
    model, _ = resolve_scene(MJWARP_SCENE)
    eng = engines.create("mjwarp", model, width=W, height=H, worlds=len(seeds), quality=quality,
                         cameras=cameras, options={"device": "cpu"})
    frames = {w: [] for w in range(len(seeds))}
    try:
        summaries = BatchRunner(eng, fps=30).run(
            seeds=seeds, policies=[make_policy("random", eng.model, seed=s) for s in seeds], duration_s=duration_s,
            on_frame=lambda w, f: frames[w].append(f.pixels.copy()))
    finally:
        eng.close()
    return eng.info, summaries, [np.stack(frames[w]) for w in range(len(seeds))]


def test_warmup_is_reported_apart(mjwarp_warm):
    info = mjwarp_warm
    assert info.engine == "mjwarp" and info.device == "cpu" and info.software
    assert info.warmup_s > 0
    assert {"physics_compile_s", "render_compile_s"} <= set(info.details)


def test_four_worlds_render_real_frames_seeds_differ_and_repeat(mjwarp_warm):
    info, summaries, frames = rollout([11, 12, 13, 11])
    assert info.engine == "mjwarp"
    assert [f.shape for f in frames] == [(6, H, W, 3)] * 4  # 0.2 s at 30 fps
    assert [s.frames for s in summaries] == [6] * 4 and not any(s.blank or s.frozen for s in summaries)
    for f in frames:
        assert 10 < f.mean() < 245 and f.std() > 5  # a scene, not a flat colour
    assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])
    assert np.array_equal(frames[0], frames[3])  # same seed, same batch
    _, _, again = rollout([11, 12, 13, 11])
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))  # same seeds, another run


def test_free_camera_and_two_views_stack(mjwarp_warm):
    free = {"distance": 2.5, "azimuth": 45.0, "elevation": -20.0, "lookat": [0.0, 0.0, 0.5]}
    _, _, frames = rollout([1, 2], duration_s=0.1, cameras=[None, free])
    for f in frames:
        assert f.shape == (3, 2 * H, W, 3)
        top, bottom = f[:, :H], f[:, H:]
        assert top.std() > 5 and bottom.std() > 5 and not np.array_equal(top, bottom)


def test_unknown_option_is_a_clear_refusal():
    model, _ = resolve_scene(MJWARP_SCENE)
    with pytest.raises(engines.EngineUnavailable, match="unknown mjwarp option.*colour"):
        engines.create("mjwarp", model, width=W, height=H, options={"colour": "blue"})


def test_depth_and_segmentation_agree_with_the_gl_engine(mjwarp_warm):
    """The ray tracer's depth and ids against mujoco.Renderer's (the GL engine) for the same seeded
    state: the same encodings, the same objects at the same pixels but for edge pixels (rays through
    pixel centres against rasterised coverage), depth within a few millimetres where both see one."""
    from simreel.contract import streams

    model, _ = resolve_scene(MJWARP_SCENE)
    shape = {}
    for name in ("mjwarp", "gl"):
        eng = engines.create(name, model, width=W, height=H, worlds=2, quality="fast",
                             options={"device": "cpu"} if name == "mjwarp" else {},
                             streams=("rgb", "depth", "segmentation"))
        try:
            eng.reset([5, 6])
            rgb = np.zeros((2, *eng.frame_shape), np.uint8)
            planes = {"depth": np.zeros((2, H, W), "<u2"), "segmentation": np.zeros((2, H, W, 4), np.uint8)}
            eng.render(rgb, planes)
        finally:
            eng.close()
        shape[name] = planes
    ray, gl = shape["mjwarp"], shape["gl"]
    ids_ray, ids_gl = streams.unpack_segmentation(ray["segmentation"]), streams.unpack_segmentation(gl["segmentation"])
    same = (ids_ray == ids_gl).all(axis=-1)
    assert same.mean() > 0.95, same.mean()
    assert len(np.unique(ids_gl[..., 0])) >= 3  # several objects in view, not one colour
    both = same & (ids_gl[..., 0] >= 0) & (gl["depth"] < streams.DEPTH_MAX)
    err = np.abs(ray["depth"][both].astype(int) - gl["depth"][both].astype(int))
    assert both.sum() > 100 and np.median(err) <= 2, (both.sum(), np.median(err))
    # what neither hits is "that far or farther" in both
    nothing = same & (ids_gl[..., 0] == -1)
    assert (ray["depth"][nothing] == streams.DEPTH_MAX).all() and (gl["depth"][nothing] == streams.DEPTH_MAX).all()
    assert nothing.sum() > 100
