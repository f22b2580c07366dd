"""A small robot whose mesh sits in a sibling folder (`meshdir="../meshes"`), as robot packages lay
theirs out, and binary STL meshes to go with it."""
from __future__ import annotations

import struct

SCENE = (b'<mujoco model="tetra-bot"><compiler meshdir="../meshes"/><asset><mesh name="m" file="tet.stl"/></asset>'
         b'<worldbody><light pos="0 0 3"/><geom type="plane" size="2 2 .1"/><body pos="0 0 .5"><freejoint/>'
         b'<geom type="mesh" mesh="m" rgba="1 .5 0 1"/></body></worldbody></mujoco>')

_TETRA = [((0, 0, 0), (1, 0, 0), (0, 1, 0)), ((0, 0, 0), (0, 1, 0), (0, 0, 1)),
          ((0, 0, 0), (0, 0, 1), (1, 0, 0)), ((1, 0, 0), (0, 1, 0), (0, 0, 1))]


def stl(scale: float = 1.0, extra_triangles: int = 0) -> bytes:
    """A tetrahedron of edge `scale` as binary STL (different scales give different bytes), padded with
    `extra_triangles` repeats of its first face to make a file of a chosen size."""
    tris = [_TETRA[0]] * extra_triangles + _TETRA
    out = bytearray(b"\0" * 80 + struct.pack("<I", len(tris)))
    for t in tris:
        out += struct.pack("<3f", 0, 0, 0) + b"".join(struct.pack("<3f", *(scale * c for c in v)) for v in t) + b"\0\0"
    return bytes(out)
