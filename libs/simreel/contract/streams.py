"""Perception streams on the wire: the one home of how depth and segmentation become bytes and back.

A frame of a run with several streams is its planes back to back, in the order the request names
them (rgb first), each `width × height` pixels of the whole frame (stacked or tiled camera views
alike), so every stream of a frame shares its index, its `video_t` and its telemetry row, and the
packer, zstd and the encoder's gap checks handle one frame as before.

Why these encodings:

* **Depth** is MuJoCo's float32 metres quantised to uint16 at 1 mm (`DEPTH_SCALE_M`), the 16UC1
  convention of ROS and RealSense depth images, so tools that read those read ours. Rounding keeps
  every value within half a millimetre; 65535 stands for 65.535 m or farther, where MuJoCo's far clip
  plane (`zfar × extent`, often 100 m and more) puts the background. A per-run scale fitted to the far
  plane would have made the background exact but every object 2-5 mm coarse.
* **Segmentation** keeps what `mujoco.Renderer` gives (object id, object type; -1, -1 for nothing) as
  id + 1 in 16 bits and type + 1 in 8, packed as bgra bytes (B = id low, G = id high, R = type, A = 0):
  FFV1 stores bgra losslessly as it comes (measured 1.1 kB/frame at 320×240 against 2.2 kB for 16-bit
  planes, and 4× faster to decode), so the encoder writes the wire bytes without converting them.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from simreel.contract import events as ev

__all__ = [
    "DEPTH_SCALE_M", "DEPTH_MAX", "PIX_FMT", "BYTES_PER_PIXEL",
    "bytes_per_pixel", "frame_bytes", "frame_streams", "planes",
    "quantise_depth", "depth_metres", "pack_segmentation", "unpack_segmentation",
    "legend", "id_colours", "check_streams", "report",
]

DEPTH_SCALE_M = 0.001
DEPTH_MAX = 65535
PIX_FMT: dict[str, str] = {"rgb": "rgb24", "depth": "gray16le", "segmentation": "bgra"}
BYTES_PER_PIXEL: dict[str, int] = {"rgb24": 3, "gray16le": 2, "bgra": 4}
_MAX_ID = 0xFFFF - 1


def check_streams(streams: Sequence[str]) -> str | None:
    """Why a request's `render.streams` cannot be recorded, or None."""
    if len(set(streams)) != len(streams):
        return "a stream is named twice"
    if "rgb" not in streams:
        return "'rgb' must be one of the streams (the colour video is what every other file is shown beside)"
    if streams[0] != "rgb":
        return "'rgb' must come first"
    return None


def frame_streams(streams: Sequence[str]) -> list[ev.FrameStream]:
    """FrameBatch.streams for a run's streams; [] for rgb alone (what every reader already knows)."""
    if list(streams) == ["rgb"]:
        return []
    return [ev.FrameStream(stream=s, pix_fmt=PIX_FMT[s]) for s in streams]  # type: ignore[arg-type]


def bytes_per_pixel(streams: Sequence[ev.FrameStream] | Sequence[str]) -> int:
    """Bytes of one pixel of a frame with these planes (3 for rgb alone, or for FrameBatch.streams [])."""
    if not streams:
        return 3
    return sum(BYTES_PER_PIXEL[s.pix_fmt if isinstance(s, ev.FrameStream) else PIX_FMT[s]] for s in streams)


def frame_bytes(width: int, height: int, streams: Sequence[ev.FrameStream] | Sequence[str] = ()) -> int:
    return width * height * bytes_per_pixel(streams)


def planes(frame: bytes | memoryview, width: int, height: int,
           streams: Sequence[ev.FrameStream] | Sequence[str]) -> dict[str, memoryview]:
    """Each stream's plane of one frame, as views (no copy)."""
    view = memoryview(frame)
    if not streams:
        return {"rgb": view}
    out, pos = {}, 0
    for s in streams:
        name, fmt = (s.stream, s.pix_fmt) if isinstance(s, ev.FrameStream) else (s, PIX_FMT[s])
        n = width * height * BYTES_PER_PIXEL[fmt]
        out[name] = view[pos:pos + n]
        pos += n
    if pos != len(view):
        raise ValueError(f"frame of {len(view)} bytes, its planes make {pos}")
    return out


def quantise_depth(depth_m: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float metres → uint16 at DEPTH_SCALE_M, rounded, 65535 for that far or farther."""
    q = np.rint(np.asarray(depth_m, dtype=np.float64) / DEPTH_SCALE_M)
    np.clip(q, 0, DEPTH_MAX, out=q)
    if out is None:
        return q.astype("<u2")
    out[...] = q
    return out


def depth_metres(stored: np.ndarray) -> np.ndarray:
    """Stored depth values → float32 metres (65535 → inf: beyond what the format holds)."""
    d = stored.astype(np.float32) * np.float32(DEPTH_SCALE_M)
    d[stored == DEPTH_MAX] = np.inf
    return d


def pack_segmentation(seg: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """mujoco.Renderer's (H, W, 2) int32 (object id, object type) → (H, W, 4) uint8 bgra as above."""
    ids = seg[..., 0].astype(np.int64) + 1
    types = seg[..., 1].astype(np.int64) + 1
    if ids.size and (ids.max() > _MAX_ID + 1 or types.max() > 255):
        raise ValueError("segmentation ids above 65534 or types above 254 do not fit the stored format")
    if out is None:
        out = np.empty(seg.shape[:-1] + (4,), np.uint8)
    out[..., 0] = ids & 0xFF
    out[..., 1] = ids >> 8
    out[..., 2] = types
    out[..., 3] = 0
    return out


def unpack_segmentation(packed: np.ndarray) -> np.ndarray:
    """(H, W, 4) bgra → (H, W, 2) int32 (object id, object type), -1 for nothing, as MuJoCo gives them."""
    p = packed.astype(np.int32)
    out = np.empty(packed.shape[:-1] + (2,), np.int32)
    out[..., 0] = p[..., 0] + (p[..., 1] << 8) - 1
    out[..., 1] = p[..., 2] - 1
    return out


def _label(type_name: str, names: Sequence[str], i: int) -> str:
    return names[i] if i < len(names) and names[i] else f"{type_name}{i}"


def legend(p: ev.Perception) -> list[dict]:
    """The report's legend: one entry per object, with the stored values and its preview colour."""
    out = []
    for type_name, objtype in p.object_types.items():
        names = p.objects.get(type_name, [])
        for i, name in enumerate(names):
            out.append({"id": i, "type": type_name, "mjtObj": objtype, "name": name,
                        "stored": [i + 1, objtype + 1], "colour": "#%02x%02x%02x" % _colour(type_name, names, i)})
    return out


def _colour(type_name: str, names: Sequence[str], i: int) -> tuple[int, int, int]:
    """A colour from the hash of the object's name (of its type and id when unnamed): the same object
    keeps its colour across episodes and runs, and when other objects are added to the scene.
    Bright and saturated, never near black (black is "no object")."""
    h = hashlib.sha256(f"{type_name}:{_label(type_name, names, i)}".encode()).digest()
    hue, sat, val = h[0] / 256 + h[1] / 65536, 0.55 + 0.45 * h[2] / 255, 0.65 + 0.35 * h[3] / 255
    k = np.array([5.0, 3.0, 1.0])
    rgb = val - val * sat * np.clip(np.minimum((k + hue * 6) % 6, 4 - (k + hue * 6) % 6), 0, 1)
    return tuple(int(round(c * 255)) for c in rgb)  # type: ignore[return-value]


def id_colours(p: ev.Perception) -> np.ndarray:
    """Preview colour lookup table indexed by [type + 1, id + 1] (the stored values): a (256, ids + 1,
    3) uint8 array, black where no object is."""
    n = max((len(v) for v in p.objects.values()), default=0) + 1
    lut = np.zeros((256, n, 3), np.uint8)
    for type_name, objtype in p.object_types.items():
        names = p.objects.get(type_name, [])
        for i in range(len(names)):
            lut[objtype + 1, i + 1] = _colour(type_name, names, i)
    return lut


def report(wanted: Sequence[str], p: ev.Perception | None, *, width: int = 0, height: int = 0) -> dict:
    """The report's account of the depth and segmentation files: how to read them back."""
    out: dict = {"recorded": list(wanted), "pix_fmt": {x: PIX_FMT[x] for x in wanted}}
    if width and height:  # of the whole frame on the wire (every camera), before compression
        out["raw_bytes_per_frame"] = {x: width * height * BYTES_PER_PIXEL[PIX_FMT[x]] for x in wanted}
    if p is None:
        return out
    if "depth" in wanted:
        out["depth"] = {"file": "FFV1 gray16le in Matroska (.mkv), lossless",
                        "scale_m": p.depth_scale_m, "metres": "stored value × scale_m; 65535 = that far or farther",
                        "clip_m": {"near": p.depth_clip_m[0], "far": p.depth_clip_m[1]},
                        "preview": {"file": "-depth.mp4", "colour_map": "viridis",
                                    "range_m": {"near": p.depth_preview_m[0], "far": p.depth_preview_m[1]}}}
    if "segmentation" in wanted:
        out["segmentation"] = {"file": "FFV1 bgra in Matroska (.mkv), lossless: B + 256 × G = object id + 1, "
                                       "R = object type (mjtObj) + 1, 0 = no object",
                               "preview": {"file": "-segmentation.mp4", "colours": "from each object's name"},
                               "legend": legend(p)}
    return out
