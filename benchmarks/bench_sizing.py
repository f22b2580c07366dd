"""The two capacities a platform team sizes with, besides bytes per frame (bench_frames.py):

1. **Encoder frames per CPU-second** at each libx264 preset (simreel's Mp4Writer, crf 23, 1 x264
   thread, pipelined RGB→YUV): how many simulator streams one encoder core keeps up with.
2. **JetStream ingest of one nats-server** (file storage, this machine's disk): FRAMES messages
   published by simreel's FramePublisher as fast as the server acks them, raw and zstd; MB/s and
   frames/s, with the server's own CPU seconds per GB.

Frames are real renders at 640×480, cycled: Gymnasium's half_cheetah.xml at full quality (a textured
floor and a tracking camera: harder for x264 than the builtin scenes), or `--scene`.

    python -m benchmarks.bench_sizing [--presets ultrafast,veryfast,medium] [--frames 300] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from benchmarks.report import emit, machine  # noqa: E402
from benchmarks.bench_frames import render  # noqa: E402
from simreel.transport.bus import Bus, FramePublisher  # noqa: E402
from simreel.runtime.config import NatsSettings  # noqa: E402
from simreel.stack.embedded import NatsServer  # noqa: E402
from simreel.transport.framing import FramePacker  # noqa: E402
from simreel.media.mp4 import Mp4Writer  # noqa: E402

W, H = 640, 480


def encoder_rate(frames: list[bytes], n: int, preset: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        c0, t0 = time.process_time(), time.perf_counter()
        with Mp4Writer(Path(d) / "x.mp4", width=W, height=H, fps=30, crf=23, preset=preset, threads=1) as wr:
            for i in range(n):
                wr.write(frames[i % len(frames)])
        wr.close()
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {"preset": preset, "fps_wall": n / wall, "frames_per_cpu_s": n / cpu}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _ingest(url: str, frames: list[bytes], n: int, compression: str) -> dict:
    bus = await Bus.connect(NatsSettings(url=url))
    try:
        pub = FramePublisher(bus, 32 * 1024 * 1024)
        packer = FramePacker(f"ingest-{compression}", 1, 0, W, H, bus.max_payload, compression=compression)
        batches = [b for i in range(n) for b in packer.add(i, i / 30, frames[i % len(frames)])]
        batches += packer.flush(last=True)  # compressed before timing: this measures the server
        t0 = time.perf_counter()
        for b in batches:
            await pub.publish(b)
        await pub.flush()
        wall = time.perf_counter() - t0
        await bus.js.purge_stream("FRAMES")
        return {"compression": compression, "frames": n, "messages": len(batches), "bytes": pub.sent,
                "mb_s": pub.sent / wall / 1e6, "frames_s": n / wall}
    finally:
        await bus.close()


def ingest(frames: list[bytes], n: int) -> list[dict]:
    """About 600 messages each way: raw frames are one per message, zstd ones about a dozen."""
    rows = []
    with tempfile.TemporaryDirectory() as d:
        server = NatsServer(store_dir=Path(d) / "js").start()
        try:
            for compression, count in (("none", n), ("zstd", 12 * n)):
                c0 = _cpu_s(server.proc.pid)
                r = asyncio.run(_ingest(server.url, frames, count, compression))
                r["server_cpu_s_per_gb"] = (_cpu_s(server.proc.pid) - c0) / (r["bytes"] / 1e9)
                rows.append(r)
        finally:
            server.cleanup()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="ultrafast,superfast,veryfast,faster,medium")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--scene", default="half_cheetah.xml")
    p.add_argument("--quality", default="full")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    frames = render(a.scene, W, H, 60, a.quality)
    enc = [encoder_rate(frames, a.frames, preset) for preset in a.presets.split(",")]
    for r in enc:
        print(f"encoder {r['preset']:10s} {r['frames_per_cpu_s']:6.1f} frames per CPU-second "
              f"({r['fps_wall']:.1f} fps wall)", file=sys.stderr)
    js = ingest(frames, 600)
    for r in js:
        print(f"JetStream ingest {r['compression']:4s} {r['mb_s']:7.1f} MB/s = {r['frames_s']:7.1f} frames/s "
              f"({r['messages']} messages; server {r['server_cpu_s_per_gb']:.2f} CPU-s per GB)", file=sys.stderr)
    out = {**machine(), "size": f"{W}x{H}", "scene": a.scene, "quality": a.quality, "encoder": enc, "jetstream_ingest": js}
    return emit(out, a.json)


if __name__ == "__main__":
    sys.exit(main())
