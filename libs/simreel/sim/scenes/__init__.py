"""Builtin scenes, shipped as MJCF files inside the package.

Each one needs no external files (textures are MuJoCo builtins), has a named camera `main` that frames
the action and a 1280×960 offscreen buffer, so any builtin renders headless at every allowed size.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from simreel.sim.errors import SceneError

__all__ = ["SceneInfo", "BUILTIN", "get", "names"]


@dataclass(frozen=True)
class SceneInfo:
    name: str
    description: str
    path: Path

    @property
    def xml(self) -> str:
        """The MJCF text (read on demand: scenes are small and this keeps the registry cheap)."""
        return self.path.read_text(encoding="utf-8")


def _info(name: str, description: str) -> SceneInfo:
    return SceneInfo(name, description, Path(str(files(__name__) / f"{name}.xml")))


BUILTIN: dict[str, SceneInfo] = {
    s.name: s
    for s in (
        _info("cartpole", "cart on a rail with a hinged pole; motors on slider and hinge (nu=2)"),
        _info("arm2", "2-link planar arm with position servos reaching over a table, with a target (nu=2)"),
        _info("pendulum", "single pendulum released at 60 degrees, torque motor on the hinge (nu=1)"),
        _info("boxes", "boxes, balls and a capsule dropped onto a checker floor (passive, nu=0)"),
        _info("workbench", "table with blocks and a 4-joint actuated arm with a pusher (nu=4)"),
        _info("apartment", "room of primitives: furniture, shelves, a fan and several lights (nu=1)"),
    )
}


def names() -> list[str]:
    return list(BUILTIN)


def get(name: str) -> SceneInfo:
    try:
        return BUILTIN[name]
    except KeyError:
        raise SceneError(f"unknown builtin scene {name!r}; known scenes: {', '.join(BUILTIN)}") from None
