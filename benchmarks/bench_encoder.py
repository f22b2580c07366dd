"""Encoder benchmark (issue "Media"): in-process PyAV `Mp4Writer` vs an ffmpeg subprocess, and RSS.

1. Throughput at 640x480 (default): the same synthetic *moving* frames (64 distinct frames of
   `simreel.media.synthetic.moving_pattern`, cycled; generated before timing) go to
   - `Mp4Writer` (libx264, veryfast, crf 23, yuv420p, threads=1), and
   - `ffmpeg -f rawvideo -i - -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p -threads 1`
     fed through a pipe (binary from imageio-ffmpeg, a benchmark-only dependency).
   Wall-clock fps and CPU seconds are reported: the ffmpeg CLI runs demux/convert/encode/mux on
   separate threads, so its wall time can hide CPU that a 2-core shared box still pays for.
2. Peak RSS (VmHWM) of a child process that encodes 10 s and 10 min at 30 fps (default 320x240):
   constant memory means the two peaks are about equal. The child also checks duration == frames/fps.
3. `--gif WIDTH`: the same for `mp4_to_gif` on both clips.

Usage:  python benchmarks/bench_encoder.py [--json results.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from simreel.media import Mp4Writer, probe
from simreel.media.mp4 import x264_asm
from simreel.media.synthetic import moving_pattern

DISTINCT = 64  # frames generated up front and cycled: generation cost (~5 ms at 640x480) stays out


def peak_rss_mb() -> float:
    """This process's RSS high-water mark in MB.

    VmHWM, not ru_maxrss: on Linux ru_maxrss survives fork+exec, so a child would report the parent
    benchmark's peak (we saw a flat 149 MB for every child before switching).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def frames_cycle(width: int, height: int) -> list[np.ndarray]:
    return [moving_pattern(i, width, height) for i in range(DISTINCT)]


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_pyav(frames: list[np.ndarray], n: int, fps: int, out: Path) -> dict:
    h, w = frames[0].shape[:2]
    c0, t0 = _cpu_self(), time.perf_counter()
    with Mp4Writer(out, width=w, height=h, fps=fps, crf=23, preset="veryfast", threads=1) as wr:
        for i in range(n):
            wr.write(frames[i % DISTINCT])
    info = wr.close()
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "cpu_s": _cpu_self() - c0,
        "fps": n / wall,
        "bytes": info.bytes,
    }


def ffmpeg_cmd(exe: str, w: int, h: int, fps: int, out: Path) -> list[str]:
    return [
        exe, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-threads", "1", "-movflags", "+faststart", str(out),
    ]  # fmt: skip


def run_ffmpeg(exe: str, frames: list[np.ndarray], n: int, fps: int, out: Path) -> dict:
    h, w = frames[0].shape[:2]
    cc0, cs0, t0 = _cpu_children(), _cpu_self(), time.perf_counter()
    proc = subprocess.Popen(ffmpeg_cmd(exe, w, h, fps, out), stdin=subprocess.PIPE)
    for i in range(n):
        proc.stdin.write(frames[i % DISTINCT].data)
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg exited with {proc.returncode}")
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        # ffmpeg's own CPU + what this process spent pushing bytes into the pipe
        "cpu_s": (_cpu_children() - cc0) + (_cpu_self() - cs0),
        "fps": n / wall,
        "bytes": out.stat().st_size,
    }


def throughput(args, tmp: Path) -> dict:
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    frames = frames_cycle(args.width, args.height)
    res: dict = {"pyav": [], "ffmpeg": []}
    for rep in range(args.repeat):  # interleaved so background load hits both alike
        res["pyav"].append(run_pyav(frames, args.frames, args.fps, tmp / f"pyav{rep}.mp4"))
        res["ffmpeg"].append(run_ffmpeg(exe, frames, args.frames, args.fps, tmp / f"ff{rep}.mp4"))
    best = {k: max(v, key=lambda r: r["fps"]) for k, v in res.items()}
    return {
        "size": f"{args.width}x{args.height}",
        "frames": args.frames,
        "repeat": args.repeat,
        "ffmpeg_version": imageio_ffmpeg.get_ffmpeg_version(),
        "ffmpeg_cmd": " ".join(ffmpeg_cmd("ffmpeg", args.width, args.height, args.fps, Path("out.mp4"))),
        "best": best,
        "runs": res,
    }


# -- RSS child -----------------------------------------------------------------------------------
def rss_child(seconds: int, width: int, height: int, fps: int, out: str) -> None:
    """Runs in a fresh interpreter so VmHWM is this encode's peak alone."""
    frames = frames_cycle(width, height)
    base = peak_rss_mb()
    n = seconds * fps
    t0 = time.perf_counter()
    with Mp4Writer(out, width=width, height=height, fps=fps) as wr:
        for i in range(n):
            wr.write(frames[i % DISTINCT])
    info = wr.close()
    wall = time.perf_counter() - t0
    peak = peak_rss_mb()
    p = probe(out)
    print(json.dumps({
        "seconds": seconds,
        "frames": n,
        "baseline_rss_mb": base,  # after imports + the 64 pregenerated frames
        "peak_rss_mb": peak,
        "encode_delta_mb": peak - base,
        "wall_s": wall,
        "fps": n / wall,
        "bytes": info.bytes,
        "duration_s": p["duration_s"],
        "decoded_frames": p["frames"],
        "duration_exact": p["duration_s"] == n / fps and p["frames"] == n,
    }))  # fmt: skip


def gif_child(src: str, dst: str, width: int) -> None:
    """Peak RSS of mp4_to_gif alone (fresh interpreter), to show the two-pass GIF is constant-memory."""
    from simreel.media import mp4_to_gif

    base = peak_rss_mb()
    t0 = time.perf_counter()
    info = mp4_to_gif(src, dst, fps=15, width=width)
    peak = peak_rss_mb()
    print(json.dumps({
        "gif_frames": info.frames,
        "gif_width": info.width,
        "gif_bytes": info.bytes,
        "gif_wall_s": time.perf_counter() - t0,
        "gif_baseline_rss_mb": base,
        "gif_peak_rss_mb": peak,
        "gif_delta_mb": peak - base,
    }))  # fmt: skip


def _child(*argv: str) -> dict:
    res = subprocess.run([sys.executable, __file__, *argv], check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def rss(args, tmp: Path) -> dict:
    w, h = (int(v) for v in args.rss_size.split("x"))
    out = {"size": args.rss_size, "fps": 30}
    for label, seconds in (("10s", 10), ("10min", 600)):
        mp4 = tmp / f"rss_{label}.mp4"
        out[label] = _child("--_rss-child", str(seconds), str(w), str(h), "30", str(mp4))
        if args.gif:
            out[label].update(_child("--_gif-child", str(mp4), str(tmp / f"{label}.gif"), str(args.gif)))
    return out


def print_table(result: dict) -> None:
    t = result.get("throughput")
    if t:
        print(f"\nThroughput, {t['size']}, {t['frames']} frames, best of {t['repeat']}:")
        print(f"{'encoder':<34}{'fps':>8}{'wall s':>9}{'cpu s':>8}{'bytes':>10}")
        for name, label in (("pyav", "Mp4Writer (PyAV, in-process)"),
                            ("ffmpeg", f"ffmpeg {t['ffmpeg_version'][:12]} subprocess")):  # fmt: skip
            r = t["best"][name]
            print(f"{label:<34}{r['fps']:>8.1f}{r['wall_s']:>9.2f}{r['cpu_s']:>8.2f}{r['bytes']:>10}")
    r = result.get("rss")
    if r:
        print(f"\nEncoder RSS (child process), {r['size']} @ {r['fps']} fps:")
        print(f"{'clip':<8}{'frames':>8}{'base MB':>9}{'peak MB':>9}{'delta MB':>10}{'fps':>8}"
              f"{'duration s':>12}{'exact':>7}")  # fmt: skip
        for label in ("10s", "10min"):
            c = r[label]
            print(f"{label:<8}{c['frames']:>8}{c['baseline_rss_mb']:>9.1f}{c['peak_rss_mb']:>9.1f}"
                  f"{c['encode_delta_mb']:>10.1f}{c['fps']:>8.0f}{c['duration_s']:>12.3f}"
                  f"{str(c['duration_exact']):>7}")  # fmt: skip
        if "gif_frames" in r["10s"]:
            print(f"\nmp4_to_gif RSS (child process), 15 fps, width {r['10s']['gif_width']}:")
            print(f"{'clip':<8}{'frames':>8}{'base MB':>9}{'peak MB':>9}{'delta MB':>10}{'wall s':>9}")
            for label in ("10s", "10min"):
                c = r[label]
                print(
                    f"{label:<8}{c['gif_frames']:>8}{c['gif_baseline_rss_mb']:>9.1f}"
                    f"{c['gif_peak_rss_mb']:>9.1f}{c['gif_delta_mb']:>10.1f}{c['gif_wall_s']:>9.1f}"
                )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--frames", type=int, default=300, help="frames per throughput run (10 s @ 30)")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--rss-size", default="320x240", help="frame size for the 10 s / 10 min RSS runs")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--json", type=Path, help="write the results here as JSON")
    ap.add_argument("--gif", type=int, metavar="WIDTH", default=0,
                    help="also measure mp4_to_gif (15 fps, this width) RSS on both RSS clips")  # fmt: skip
    ap.add_argument("--_rss-child", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--_gif-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    from simreel.runtime import log

    if args._rss_child:
        log.setup("warning")  # stdout carries the child's JSON
        s, w, h, fps, out = args._rss_child
        rss_child(int(s), int(w), int(h), int(fps), out)
        return
    if args._gif_child:
        log.setup("warning")
        src, dst, width = args._gif_child
        gif_child(src, dst, int(width))
        return

    log.setup(os.environ.get("SIMREEL_LOG_LEVEL", "warning"))  # per-video info lines would bury the table
    result: dict = {
        "python": platform.python_version(),
        "pyav": av.__version__,
        "ffmpeg_in_pyav": str(av.ffmpeg_version_info),
        "cpus": os.cpu_count(),
        "x264_asm_pinned": x264_asm(),  # Mp4Writer only; the ffmpeg CLI auto-detects
        "loadavg_at_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="bench_encoder_") as d:
        tmp = Path(d)
        if not args.skip_throughput:
            result["throughput"] = throughput(args, tmp)
        if not args.skip_rss:
            result["rss"] = rss(args, tmp)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
