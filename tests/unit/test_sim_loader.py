"""Loading MJCF from requests: clear errors, and no file outside the request and the scene roots."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from simreel.bench.png import encode_png  # noqa: E402
from simreel.sim import loader  # noqa: E402
from simreel.sim.errors import SceneError  # noqa: E402
from simreel.sim.loader import compiled_xml, load_model, load_path, resolve_scene  # noqa: E402

TEXTURED = """<mujoco>
  <asset>
    <texture name="t" type="2d" file="{file}"/>
    <material name="m" texture="t"/>
  </asset>
  <worldbody><geom type="plane" size="1 1 0.1" material="m"/></worldbody>
</mujoco>"""

TETRA = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n"


def _png(w=4, h=4):
    img = np.zeros((h, w, 3), np.uint8)
    img[::2, ::2] = (255, 0, 0)
    return encode_png(img)


def test_malformed_xml_reports_the_line():
    xml = "<mujoco>\n  <worldbody>\n    <geom size='1'/>\n</mujoco>\n"
    with pytest.raises(SceneError, match=r"MJCF parse error at line 4"):
        load_model(xml)


def test_compile_error_reports_the_line_and_the_problem():
    xml = "<mujoco>\n<worldbody>\n<geom type='mesh' mesh='missing'/>\n</worldbody>\n</mujoco>"
    with pytest.raises(SceneError) as e:
        load_model(xml)
    assert "line 3" in str(e.value) and "missing" in str(e.value)


def test_schema_error_is_readable():
    with pytest.raises(SceneError, match=r"line 2.*unrecognized element.*bogus"):
        load_model("<mujoco>\n<bogus/>\n</mujoco>")


@pytest.mark.parametrize("file", ["/etc/passwd", "../secret.png", "textures/../../x.png", "C:/x.png",
                                  "file:///etc/passwd", "~/x.png"])
def test_dangerous_paths_are_refused_and_named(file):
    with pytest.raises(SceneError) as e:
        load_model(TEXTURED.format(file=file), {"x.png": _png()})
    assert file in str(e.value)


def test_dangerous_compiler_dirs_are_refused():
    xml = "<mujoco><compiler meshdir='/etc'/><asset><mesh name='m' file='a.obj'/></asset></mujoco>"
    with pytest.raises(SceneError, match="/etc"):
        load_model(xml, {"a.obj": TETRA})


def test_missing_asset_is_named():
    with pytest.raises(SceneError, match=r"'tex/wood\.png'.*not found"):
        load_model(TEXTURED.format(file="tex/wood.png"))


def test_asset_from_the_request_dict_is_used():
    model = load_model(TEXTURED.format(file="tex/wood.png"), {"tex/wood.png": _png(8, 4)})
    assert model.ntex == 1 and (model.tex_width[0], model.tex_height[0]) == (8, 4)


def test_include_from_assets_is_scanned_too():
    inc = b"<mujoco><asset><mesh name='m' file='a.obj'/></asset><worldbody><geom type='mesh' mesh='m'/></worldbody></mujoco>"
    xml = "<mujoco><compiler meshdir='meshes'/><include file='parts/arm.xml'/></mujoco>"
    model = load_model(xml, {"parts/arm.xml": inc, "meshes/a.obj": TETRA})
    assert model.nmesh == 1 and model.ngeom == 1
    evil = b"<mujoco><asset><texture name='t' type='2d' file='/etc/hostname'/></asset></mujoco>"
    with pytest.raises(SceneError, match="/etc/hostname"):
        load_model("<mujoco><include file='evil.xml'/></mujoco>", {"evil.xml": evil})


def test_files_under_roots_are_read_and_symlinks_out_are_refused(tmp_path):
    root = tmp_path / "scenes"
    (root / "tex").mkdir(parents=True)
    (root / "tex" / "wood.png").write_bytes(_png())
    assert load_model(TEXTURED.format(file="tex/wood.png"), roots=[root]).ntex == 1
    outside = tmp_path / "outside.png"
    outside.write_bytes(_png())
    (root / "tex" / "link.png").symlink_to(outside)
    with pytest.raises(SceneError, match="link.png"):
        load_model(TEXTURED.format(file="tex/link.png"), roots=[root])


def test_load_path_stays_under_roots(tmp_path):
    root = tmp_path / "scenes"
    root.mkdir()
    (root / "floor.xml").write_text(TEXTURED.format(file="wood.png"))
    (root / "wood.png").write_bytes(_png())
    assert load_path("floor.xml", roots=[root]).ntex == 1
    assert load_path(root / "floor.xml", roots=[root]).ntex == 1
    (tmp_path / "other.xml").write_text("<mujoco/>")
    with pytest.raises(SceneError, match="not found under the scene roots"):
        load_path(tmp_path / "other.xml", roots=[root])
    with pytest.raises(SceneError, match=r"'\.\.'"):
        load_path("../other.xml", roots=[root])
    model, label = resolve_scene("file:floor.xml", roots=[root])
    assert label == "file:floor.xml" and model.ntex == 1


def test_resolve_scene_kinds():
    m, label = resolve_scene("pendulum")
    assert label == "pendulum" and m.nu == 1
    m, label = resolve_scene("  <mujoco model='x'/>")
    assert label.startswith("inline:")
    with pytest.raises(SceneError, match="cartpole"):
        resolve_scene("no-such-scene")


def test_offscreen_buffer_grows_to_the_requested_size():
    xml = "<mujoco><worldbody><light pos='0 0 3'/><geom type='box' size='1 1 1'/></worldbody></mujoco>"
    model = load_model(xml, width=1400, height=1000)
    assert (model.vis.global_.offwidth, model.vis.global_.offheight) == (1400, 1000)
    with mujoco.Renderer(model, height=1000, width=1400) as r:
        r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        r.update_scene(data)
        assert r.render().shape == (1000, 1400, 3)
    small = load_model(xml, width=100, height=100)  # never shrinks
    assert small.vis.global_.offwidth == 640


def test_compiled_xml_survives_other_loads():
    a, _ = resolve_scene("cartpole", width=1600, height=1200)
    resolve_scene("apartment")  # MuJoCo's "last loaded model" is now another one
    text = compiled_xml(a)
    assert 'model="cartpole"' in text and 'offwidth="1600"' in text
    again = load_model(text)
    assert again.nbody == a.nbody


def test_camera_names():
    m, _ = resolve_scene("workbench")
    assert loader.camera_names(m) == ["main", "top"]
