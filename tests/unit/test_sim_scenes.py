"""Builtin scenes: each compiles, follows the house rules, and renders headless at min and max size."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import xml.etree.ElementTree as ET  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from simreel.sim import loader, scenes  # noqa: E402
from simreel.sim.errors import SceneError  # noqa: E402
from simreel.sim.rollout import make_camera  # noqa: E402

REQUIRED = {"cartpole", "arm2", "pendulum", "boxes", "workbench", "apartment"}


def _render(model, width, height, quality="full"):
    from simreel.sim.rollout import apply_quality

    with mujoco.Renderer(model, height=height, width=width) as r:
        apply_quality(r.scene, quality)
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        r.update_scene(data, camera=make_camera(model))
        return r.render()


def test_registry_has_the_required_scenes_and_get_names_them_on_error():
    assert REQUIRED <= set(scenes.BUILTIN)
    assert scenes.get("cartpole").name == "cartpole"
    with pytest.raises(SceneError) as e:
        scenes.get("nope")
    for name in REQUIRED:
        assert name in str(e.value)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_scene_xml_follows_the_house_rules(name):
    info = scenes.get(name)
    root = ET.fromstring(info.xml)
    assert any(t.get("builtin") == "checker" for t in root.iter("texture")), "checker floor texture"
    assert not any(k.startswith("file") for el in root.iter() for k in el.attrib), "no external files"
    glob = root.find("visual/global")
    assert (glob.get("offwidth"), glob.get("offheight")) == ("1280", "960")
    assert float(root.find("option").get("timestep")) == 0.002
    assert [c.get("name") for c in root.iter("camera")][0] == "main"
    assert len(list(root.iter("light"))) >= (3 if name == "apartment" else 1)


def test_every_builtin_renders_at_1280x960_and_64x48():
    """The max-resolution check: the 1280x960 offscreen buffer is really there in every scene."""
    for name in sorted(scenes.BUILTIN):
        model, label = loader.resolve_scene(name)
        assert label == name
        big = _render(model, 1280, 960, "fast")
        assert big.shape == (960, 1280, 3) and big.mean() > 20, name
        small = _render(model, 64, 48)
        assert small.shape == (48, 64, 3) and small.mean() > 20, name
        assert np.std(small) > 5, f"{name}: the main camera should see some structure"


def test_apartment_is_the_heavy_one():
    model, _ = loader.resolve_scene("apartment")
    assert model.ngeom >= 80 and model.nlight >= 3


def test_the_cartpole_pole_never_reaches_the_floor():
    """The demo's pole hangs from a rail 1 m up: at any angle, with the cart at either end, its
    lowest point stays above the floor (no swinging through it)."""
    model, _ = loader.resolve_scene("cartpole")
    data = mujoco.MjData(model)
    pole_geoms = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, g) for g in ("pole", "tip")]
    lowest = np.inf
    for slider in model.jnt_range[model.joint("slider").id]:
        for angle in np.linspace(-np.pi, np.pi, 73):
            data.qpos[:] = (slider, angle)
            mujoco.mj_forward(model, data)
            for g in pole_geoms:
                radius = model.geom_size[g][0]
                ends = [data.geom_xpos[g]] if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_SPHERE else [
                    data.geom_xpos[g] + s * data.geom_xmat[g].reshape(3, 3)[:, 2] * model.geom_size[g][1]
                    for s in (-1, 1)]
                lowest = min(lowest, min(e[2] for e in ends) - radius)
    assert lowest > 0.05, f"the pole reaches z={lowest:.3f}"
