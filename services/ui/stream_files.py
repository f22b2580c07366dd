"""Depth and segmentation files read back for the run page: the value under the pointer.

The browser shows each stream's colour preview (an MP4) and asks here for the stored planes of the
frame under the cursor, once per frame; it then reads any pixel of that frame without another request.
"""
from __future__ import annotations

import base64
import io

import numpy as np

__all__ = ["decode", "frame_json"]


def decode(data: bytes) -> list[np.ndarray]:
    """Every frame of a stored FFV1 file, in its stored format (uint16 depth, bgra-packed ids)."""
    import av

    with av.open(io.BytesIO(data)) as c:
        return [f.to_ndarray(format=f.format.name) for f in c.decode(video=0)]


def frame_json(kind: str, frame: np.ndarray, index: int) -> dict:
    """`depth`: uint16 little-endian values (× 0.001 m; 65535 = that far or farther); `segmentation`:
    per pixel the stored id (object id + 1) as uint16 and type (mjtObj + 1) as uint8, in two planes."""
    h, w = frame.shape[:2]
    out: dict = {"kind": kind, "frame": index, "width": w, "height": h}
    if kind == "depth":
        out["depth_u16"] = base64.b64encode(frame.astype("<u2").tobytes()).decode()
    else:
        ids = frame[..., 0].astype("<u2") | (frame[..., 1].astype("<u2") << 8)
        out["id_u16"] = base64.b64encode(ids.tobytes()).decode()
        out["type_u8"] = base64.b64encode(np.ascontiguousarray(frame[..., 2]).tobytes()).decode()
    return out
