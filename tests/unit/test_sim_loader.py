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
    assert label == "x"  # runs of inline MJCF are listed by the model's own name
    m, label = resolve_scene("<mujoco/>")
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


def _tree(**files):
    return {k.replace("__", "/"): (v.encode() if isinstance(v, str) else v) for k, v in files.items()}


def test_a_reference_may_climb_inside_the_tree():
    files = {"robot/scene.xml": b"<mujoco><compiler meshdir='../meshes'/><asset><mesh name='m' file='a.obj'/>"
                                b"</asset><worldbody><geom type='mesh' mesh='m'/></worldbody></mujoco>",
             "meshes/a.obj": TETRA}
    assert loader.load_tree("robot/scene.xml", files).nmesh == 1


@pytest.mark.parametrize("meshdir", ["../../meshes", "../meshes/../../x"])
def test_a_reference_climbing_out_of_the_tree_is_refused(meshdir):
    files = {"robot/scene.xml": f"<mujoco><compiler meshdir='{meshdir}'/><asset><mesh name='m' file='a.obj'/>"
                                f"</asset></mujoco>".encode(),
             "meshes/a.obj": TETRA}
    with pytest.raises(loader.SceneForbidden, match="climbs out of the scene's tree"):
        loader.load_tree("robot/scene.xml", files)


def test_same_named_meshes_in_different_folders_stay_apart():
    """MuJoCo's in-memory VFS matches by base name; a tree on disk keeps them apart."""
    big = b"v 0 0 0\nv 3 0 0\nv 0 3 0\nv 0 0 3\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n"
    files = {"scene.xml": b"<mujoco><asset><mesh name='l' file='left/f.obj'/><mesh name='r' file='right/f.obj'/>"
                          b"</asset><worldbody><geom type='mesh' mesh='l'/><geom type='mesh' mesh='r'/></worldbody>"
                          b"</mujoco>",
             "left/f.obj": TETRA, "right/f.obj": big}
    m = loader.load_tree("scene.xml", files)
    sizes = [float(np.ptp(m.mesh_vert[m.mesh_vertadr[i]:m.mesh_vertadr[i] + m.mesh_vertnum[i]])) for i in range(2)]
    assert sizes[1] == pytest.approx(3 * sizes[0])


def test_nested_includes_resolve_as_mujoco_does(tmp_path):
    """An include inside an included file is looked up beside the file that includes it; a mesh named
    in an included file falls back to that file's folder."""
    files = {"main.xml": b"<mujoco><include file='parts/arm.xml'/></mujoco>",
             "parts/arm.xml": b"<mujoco><include file='hand/hand.xml'/></mujoco>",
             "parts/hand/hand.xml": b"<mujoco><asset><mesh name='m' file='f.obj'/></asset>"
                                    b"<worldbody><geom type='mesh' mesh='m'/></worldbody></mujoco>",
             "parts/hand/f.obj": TETRA}
    assert loader.load_tree("main.xml", files).nmesh == 1
    # and MuJoCo itself agrees, loading the same tree from disk
    for k, v in files.items():
        (tmp_path / k).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / k).write_bytes(v)
    assert mujoco.MjModel.from_xml_path(str(tmp_path / "main.xml")).nmesh == 1


def test_a_missing_tree_file_is_named_with_its_element():
    files = {"scene.xml": b"<mujoco><asset><texture name='t' type='cube' fileright='r.png'/></asset></mujoco>"}
    with pytest.raises(SceneError, match=r"'r\.png'.*<texture fileright"):
        loader.load_tree("scene.xml", files)


@pytest.mark.parametrize("name", ["/etc/passwd", "../up.xml", "a/../../b.xml", "x\x00.xml"])
def test_bad_file_names_in_a_tree_are_refused(name):
    with pytest.raises(SceneError):
        loader.load_tree("scene.xml", {"scene.xml": b"<mujoco/>", name: b"<mujoco/>"})
