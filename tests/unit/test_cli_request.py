"""`simreel run robot.xml` ships the file and everything it references, `..` included, by content."""
import struct

import msgspec
import pytest

from simreel.cli import build_request, pack_scene, parser
from simreel.sim.loader import load_tree


def _tetrahedron_stl(path):
    tris = [((0, 0, 0), (1, 0, 0), (0, 1, 0)), ((0, 0, 0), (0, 1, 0), (0, 0, 1)),
            ((0, 0, 0), (0, 0, 1), (1, 0, 0)), ((1, 0, 0), (0, 1, 0), (0, 0, 1))]
    with open(path, "wb") as f:
        f.write(b"\0" * 80 + struct.pack("<I", len(tris)))
        for t in tris:
            f.write(struct.pack("<3f", 0, 0, 0) + b"".join(struct.pack("<3f", *v) for v in t) + b"\0\0")


def _request(*argv):
    a = parser().parse_args(["run", *map(str, argv)])
    package = pack_scene(a)
    return build_request(a, package), package


def test_local_scene_file_ships_its_meshes_and_includes(tmp_path):
    (tmp_path / "meshes").mkdir()
    _tetrahedron_stl(tmp_path / "meshes" / "tet.stl")
    (tmp_path / "floor.xml").write_text('<mujoco><worldbody><geom type="plane" size="1 1 .1"/></worldbody></mujoco>')
    (tmp_path / "robot.xml").write_text(
        '<mujoco><compiler meshdir="meshes"/><asset><mesh name="tet" file="tet.stl"/></asset>'
        '<include file="floor.xml"/><worldbody><body><freejoint/><geom type="mesh" mesh="tet"/></body>'
        '</worldbody></mujoco>')
    req, package = _request(tmp_path / "robot.xml")
    assert req.scene == "robot.xml" and set(req.files) == {"robot.xml", "meshes/tet.stl", "floor.xml"}
    assert req.assets == {} and req.files["meshes/tet.stl"].size == (tmp_path / "meshes" / "tet.stl").stat().st_size
    model = load_tree(req.scene, package.local)  # what the simulator does with the files it fetched
    assert model.nmesh == 1


def test_a_sibling_mesh_folder_is_packed_under_the_common_root(tmp_path):
    """Robot packages keep meshes beside the MJCF's folder: `meshdir="../stls/hand"`."""
    (tmp_path / "stls" / "hand").mkdir(parents=True)
    _tetrahedron_stl(tmp_path / "stls" / "hand" / "palm.stl")
    (tmp_path / "hand").mkdir()
    (tmp_path / "hand" / "shared.xml").write_text(
        '<mujoco><asset><mesh name="palm" file="palm.stl"/></asset></mujoco>')
    (tmp_path / "hand" / "manipulate.xml").write_text(
        '<mujoco><compiler meshdir="../stls/hand"/><include file="shared.xml"/>'
        '<worldbody><body><freejoint/><geom type="mesh" mesh="palm"/></body></worldbody></mujoco>')
    req, package = _request(tmp_path / "hand" / "manipulate.xml")
    assert req.scene == "hand/manipulate.xml"
    assert set(req.files) == {"hand/manipulate.xml", "hand/shared.xml", "stls/hand/palm.stl"}
    assert load_tree(req.scene, package.local).nmesh == 1


def test_a_missing_file_is_named_with_its_element_before_submitting(tmp_path):
    (tmp_path / "robot.xml").write_text('<mujoco><asset><mesh name="m" file="gone.stl"/></asset></mujoco>')
    with pytest.raises(SystemExit) as info:
        _request(tmp_path / "robot.xml")
    assert "'gone.stl'" in str(info.value) and "<mesh file=" in str(info.value)


def test_a_scene_over_the_caps_names_the_cap_and_its_setting(tmp_path, monkeypatch):
    _tetrahedron_stl(tmp_path / "tet.stl")
    (tmp_path / "robot.xml").write_text('<mujoco><asset><mesh name="m" file="tet.stl"/></asset></mujoco>')
    monkeypatch.setenv("SIMREEL_MAX_SCENE_FILE_BYTES", "100")
    with pytest.raises(SystemExit) as info:
        _request(tmp_path / "robot.xml")
    assert "per-file cap" in str(info.value) and "SIMREEL_MAX_SCENE_FILE_BYTES" in str(info.value)
    monkeypatch.setenv("SIMREEL_MAX_SCENE_FILE_BYTES", "1000000")
    monkeypatch.setenv("SIMREEL_MAX_SCENE_BYTES", "150")
    with pytest.raises(SystemExit) as info:
        _request(tmp_path / "robot.xml")
    assert "per-scene cap" in str(info.value) and "SIMREEL_MAX_SCENE_BYTES" in str(info.value)


def test_engine_and_its_options_reach_the_request():
    req = build_request(parser().parse_args(["run", "cartpole", "--episodes", "8", "--engine", "mjwarp",
                                             "--engine-option", "device=cpu", "--engine-option", "deterministic=true"]))
    assert req.render.engine == "mjwarp" and req.render.engine_options == {"device": "cpu", "deterministic": True}
    assert build_request(parser().parse_args(["run", "cartpole"])).render.engine == "gl"
    with pytest.raises(SystemExit, match="engine"):
        build_request(parser().parse_args(["run", "cartpole", "--engine", "os:system"]))


def _png(path):
    from simreel.bench.png import encode_png
    import numpy as np

    path.write_bytes(encode_png(np.full((4, 4, 3), 128, np.uint8)))


def test_attached_models_cube_faces_and_strippath_are_packed_as_mujoco_reads_them(tmp_path):
    """An attached <model file> resolves inside its own folder with its own meshdir; a cube texture's
    six faces come from texturedir; strippath reduces a mesh path to its base name."""
    (tmp_path / "arm" / "meshes").mkdir(parents=True)
    _tetrahedron_stl(tmp_path / "arm" / "meshes" / "link.stl")
    (tmp_path / "arm" / "arm.xml").write_text(
        '<mujoco model="arm"><compiler meshdir="meshes"/><asset><mesh name="link" file="link.stl"/></asset>'
        '<worldbody><body name="base"><geom type="mesh" mesh="link"/></body></worldbody></mujoco>')
    (tmp_path / "scene" / "sky").mkdir(parents=True)
    faces = ["right", "left", "up", "down", "front", "back"]
    for f in faces:
        _png(tmp_path / "scene" / "sky" / f"{f}.png")
    (tmp_path / "scene" / "tools").mkdir()
    _tetrahedron_stl(tmp_path / "scene" / "tool.stl")
    cube = " ".join(f'file{f}="{f}.png"' for f in faces)
    (tmp_path / "scene" / "world.xml").write_text(
        '<mujoco><compiler texturedir="sky" strippath="true"/>'
        f'<asset><model name="arm" file="../arm/arm.xml"/><texture name="sky" type="skybox" {cube}/>'
        '<mesh name="tool" file="tools/../tool.stl"/></asset>'
        '<worldbody><light pos="0 0 3"/><geom type="mesh" mesh="tool"/>'
        '<body name="mount"><attach model="arm" body="base" prefix="a-"/></body></worldbody></mujoco>')
    import mujoco

    reference = mujoco.MjModel.from_xml_path(str(tmp_path / "scene" / "world.xml"))  # MuJoCo on the user's disk
    req, package = _request(tmp_path / "scene" / "world.xml")
    assert req.scene == "scene/world.xml"
    assert {"arm/arm.xml", "arm/meshes/link.stl", "scene/tool.stl"} <= set(req.files)
    assert {f"scene/sky/{f}.png" for f in faces} <= set(req.files)
    model = load_tree(req.scene, package.local)  # the packed tree alone, elsewhere
    assert (model.nmesh, model.ntex, model.ngeom) == (reference.nmesh, reference.ntex, reference.ngeom) == (2, 1, 2)


def test_streams_and_keep_rules_reach_the_request():
    req = build_request(parser().parse_args(["run", "arm2", "--stream", "depth", "--stream", "segmentation",
                                             "--keep", '{"rule": "worst", "k": 2}', "--episodes", "3"]))
    assert req.render.streams == ["rgb", "depth", "segmentation"]
    assert msgspec.to_builtins(req.outputs.keep) == {"rule": "worst", "k": 2}
    assert msgspec.to_builtins(build_request(parser().parse_args(["run", "arm2", "--keep", "failures"])).outputs.keep) \
        == {"rule": "failures"}
    with pytest.raises(SystemExit, match=r"missing required field `k` - at `\$.outputs.keep`"):
        build_request(parser().parse_args(["run", "arm2", "--keep", '{"rule": "worst"}']))
