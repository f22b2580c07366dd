"""`simreel run robot.xml` ships the file and what it references, and nothing outside its folder."""
import struct

import pytest

from simreel.cli import build_request, parser
from simreel.sim.loader import load_model


def _tetrahedron_stl(path):
    tris = [((0, 0, 0), (1, 0, 0), (0, 1, 0)), ((0, 0, 0), (0, 1, 0), (0, 0, 1)),
            ((0, 0, 0), (0, 0, 1), (1, 0, 0)), ((1, 0, 0), (0, 1, 0), (0, 0, 1))]
    with open(path, "wb") as f:
        f.write(b"\0" * 80 + struct.pack("<I", len(tris)))
        for t in tris:
            f.write(struct.pack("<3f", 0, 0, 0) + b"".join(struct.pack("<3f", *v) for v in t) + b"\0\0")


def test_local_scene_file_ships_its_meshes_and_includes(tmp_path):
    (tmp_path / "meshes").mkdir()
    _tetrahedron_stl(tmp_path / "meshes" / "tet.stl")
    (tmp_path / "floor.xml").write_text('<mujoco><worldbody><geom type="plane" size="1 1 .1"/></worldbody></mujoco>')
    (tmp_path / "robot.xml").write_text(
        '<mujoco><compiler meshdir="meshes"/><asset><mesh name="tet" file="tet.stl"/></asset>'
        '<include file="floor.xml"/><worldbody><body><freejoint/><geom type="mesh" mesh="tet"/></body>'
        '</worldbody></mujoco>')
    req = build_request(parser().parse_args(["run", str(tmp_path / "robot.xml")]))
    assert req.scene.startswith("<mujoco") and set(req.assets) == {"meshes/tet.stl", "floor.xml"}
    model = load_model(req.scene, req.assets)  # what the simulator will do, with nothing but the request
    assert model.nmesh == 1


def test_a_reference_outside_the_folder_is_refused_before_submitting(tmp_path):
    (tmp_path / "scene").mkdir()
    (tmp_path / "secret.xml").write_text("<mujoco/>")
    (tmp_path / "scene" / "robot.xml").write_text('<mujoco><include file="../secret.xml"/></mujoco>')
    with pytest.raises(SystemExit) as info:
        build_request(parser().parse_args(["run", str(tmp_path / "scene" / "robot.xml")]))
    assert "'..'" in str(info.value)


def test_engine_and_its_options_reach_the_request():
    req = build_request(parser().parse_args(["run", "cartpole", "--episodes", "8", "--engine", "mjwarp",
                                             "--engine-option", "device=cpu", "--engine-option", "deterministic=true"]))
    assert req.render.engine == "mjwarp" and req.render.engine_options == {"device": "cpu", "deterministic": True}
    assert build_request(parser().parse_args(["run", "cartpole"])).render.engine == "gl"
    with pytest.raises(SystemExit, match="engine"):
        build_request(parser().parse_args(["run", "cartpole", "--engine", "os:system"]))
