"""How many bytes does a frame cost on the wire? Rendered frames, each codec, side by side.

For each scene and size: real frames rendered headless (random policy, one episode), then
- raw rgb24 bytes per frame;
- simreel's FRAMES messages per frame, as published (FramePacker with zstd, msgpack envelope included);
- the candidate lossless codecs on the same frames, one call per frame: zstd level 1 (simreel's
  choice) and 3, lz4 (if `lz4` is installed: `pip install lz4`), zlib level 1 — ratio and CPU
  milliseconds per frame to compress and to decompress, on one core.

Scenes: Gymnasium's half_cheetah.xml and humanoid.xml (from the installed gymnasium package's
assets), and the builtin cartpole and apartment.

    python -m benchmarks.bench_frames [--frames 60] [--sizes 640x480] [--quality full] [--json out.json]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import zlib
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from benchmarks.report import emit, machine  # noqa: E402
from simreel.contract import events as ev  # noqa: E402
from simreel.transport import framecodec  # noqa: E402
from simreel.transport.framing import FramePacker  # noqa: E402

SCENES = ["half_cheetah.xml", "humanoid.xml", "cartpole", "apartment"]


def _model(scene: str, width: int, height: int):
    from simreel.sim import loader

    if scene.endswith(".xml"):
        import gymnasium

        assets = Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets"
        return loader.load_path(scene, roots=[assets], width=width, height=height)
    return loader.resolve_scene(scene, {}, (), width, height)[0]


def render(scene: str, width: int, height: int, n: int, quality: str) -> list[bytes]:
    from simreel.sim import policies
    from simreel.sim.rollout import EpisodeRunner

    model = _model(scene, width, height)
    out: list[bytes] = []

    def body() -> None:
        runner = EpisodeRunner(model, width=width, height=height, fps=30, quality=quality)
        try:
            runner.run_episode(seed=0, policy=policies.make_policy("random", model, seed=0), duration_s=n / 30,
                               on_frame=lambda f: out.append(f.pixels.tobytes()))
        finally:
            runner.close()

    t = threading.Thread(target=body)
    t.start()
    t.join()
    return out[:n]


def _codecs() -> dict:
    z = framecodec.zstd
    cm1, c1, c3 = framecodec.FrameCompressor(-1), framecodec.FrameCompressor(1), framecodec.FrameCompressor(3)
    out = {
        "zstd--1": (cm1.compress, z.decompress),
        "zstd-1 (simreel)": (c1.compress, z.decompress),
        "zstd-3": (c3.compress, z.decompress),
        "zlib-1": (lambda b: zlib.compress(b, 1), zlib.decompress),
    }
    try:
        import lz4.frame

        out["lz4"] = (lz4.frame.compress, lz4.frame.decompress)
    except ImportError:
        pass
    return out


def measure(frames: list[bytes], width: int, height: int) -> dict:
    raw = sum(map(len, frames))
    n = len(frames)
    packer = FramePacker("bench", 1, 0, width, height, 1024 * 1024, compression="zstd")
    batches = [b for i, f in enumerate(frames) for b in packer.add(i, i / 30, f)] + packer.flush(last=True)
    wire = sum(len(ev.encode_frames(b)) for b in batches)
    row: dict = {"frames": n, "raw_bytes_per_frame": raw // n, "wire_bytes_per_frame": round(wire / n),
                 "wire_ratio": raw / wire, "messages": len(batches), "codecs": {}}
    for name, (comp, decomp) in _codecs().items():
        t0 = time.process_time()
        packed = [comp(f) for f in frames]
        tc = time.process_time() - t0
        t0 = time.process_time()
        back = [decomp(p) for p in packed]
        td = time.process_time() - t0
        assert back == frames, name
        size = sum(map(len, packed))
        row["codecs"][name] = {"ratio": raw / size, "bytes_per_frame": round(size / n),
                               "compress_ms": 1000 * tc / n, "decompress_ms": 1000 * td / n}
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", default=",".join(SCENES))
    p.add_argument("--sizes", default="640x480")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--quality", default="full")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    rows = []
    for size in a.sizes.split(","):
        w, h = map(int, size.split("x"))
        for scene in a.scenes.split(","):
            row = {"scene": scene, "size": size, "quality": a.quality, **measure(render(scene, w, h, a.frames, a.quality), w, h)}
            rows.append(row)
            codecs = "  ".join(f"{k} {v['ratio']:.1f}x {v['compress_ms']:.2f}/{v['decompress_ms']:.2f} ms"
                               for k, v in row["codecs"].items())
            print(f"{scene:18s} {size:9s} raw {row['raw_bytes_per_frame']:>9,} B  on the wire {row['wire_bytes_per_frame']:>9,} B"
                  f"  ×{row['wire_ratio']:.1f} smaller  | {codecs}", file=sys.stderr)
    out = {**machine(), "rows": rows}
    return emit(out, a.json)


if __name__ == "__main__":
    sys.exit(main())
