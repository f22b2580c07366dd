"""`simreel bench pipeline`: frames through the real stack, measured against the obvious alternatives.

(a) encoder throughput: the same synthetic frames encoded by a simreel encoder process reading them
    from JetStream vs piped raw into an `ffmpeg` subprocess with the same codec settings;
(b) scaling: 1 vs 2 encoder processes on many runs waiting at once;
(c) latency: episode end → VideoAvailable and → ArtifactStored on a real simulated run.

Frames for (a) and (b) are published into FRAMES first, exactly as a simulator would, so the encoder
is the only thing being timed. Ratios are what to read; this machine is shared and noisy.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.transport.bus import Bus
from simreel.client import Client
from simreel.runtime.config import NatsSettings
from simreel.stack.embedded import Stack
from simreel.transport.framing import FramePacker
from simreel.media.mp4 import Mp4Writer, x264_asm
from simreel.media.synthetic import moving_pattern

DISTINCT = 32


def _frames(width: int, height: int) -> list[bytes]:
    return [moving_pattern(i, width, height).tobytes() for i in range(DISTINCT)]


def _started(run_id: str, width: int, height: int, fps: int, frames: int) -> ev.SimStarted:
    return ev.SimStarted(run_id=run_id, attempt=1, scene="synthetic", episodes=1, frames_per_episode=[frames], fps=fps,
                         width=width, height=height, cameras=[], physics_dt=0.002, gl_backend="none",
                         gl_renderer="synthetic", session="bench",
                         outputs=ev.OutputSpec(formats=["mp4"], telemetry=False))


async def _publish_frames(bus: Bus, run_id: str, width: int, height: int, n: int, pixels: list[bytes],
                          compression: str = "zstd") -> None:
    packer = FramePacker(run_id, 1, 0, width, height, bus.max_payload, compression=compression)
    pending = []
    for i in range(n):
        for b in packer.add(i, i / 30, pixels[i % len(pixels)]):
            pending.append(await bus.publish_frame_data(subjects.frames(run_id, 1, 0), ev.encode_frames(b), None))
        if len(pending) > 64:
            await asyncio.gather(*pending)
            pending = []
    for b in packer.flush(last=True):
        pending.append(await bus.publish_frame_data(subjects.frames(run_id, 1, 0), ev.encode_frames(b), None))
    await asyncio.gather(*pending)


async def _encode_runs(url: str, stack: Stack, runs: list[str], width: int, height: int, n: int,
                       encoders: int, compression: str = "zstd") -> float:
    """Publish every run's frames, start `encoders` processes, release all runs; seconds until the last video."""
    bus = await Bus.connect(NatsSettings(url=url))
    try:
        pixels = _frames(width, height)
        for rid in runs:
            await _publish_frames(bus, rid, width, height, n, pixels, compression)
        env = stack.service_env()
        env["SIMREEL_CONCURRENCY"] = "1"
        # Same CPU priority as the ffmpeg baseline (the embedded stack's default nice 10 would lose
        # every contest for the cores on a shared machine and measure the neighbours instead).
        env["SIMREEL_ENCODER_NICE"] = "0"
        procs = [stack.start_service("encoder", env) for _ in range(encoders)]
        await until_pulling(bus, "encoder", encoders)
        waiting = set(runs)
        videos: asyncio.Queue[bytes] = asyncio.Queue()

        async def _video(_subject: str, data: bytes) -> None:
            videos.put_nowait(data)

        sub = await bus.listen(subjects.all_of(ev.VideoAvailable), _video)
        cpu0 = sum(_cpu_s(p.pid) for p in procs)
        t0 = time.perf_counter()
        for rid in runs:
            await bus.publish(_started(rid, width, height, 30, n))
        while waiting:
            e = ev.decode(await asyncio.wait_for(videos.get(), 600))
            waiting.discard(e.run_id)
            _LAST_CPU["sha256"] = e.sha256
        elapsed = time.perf_counter() - t0
        _LAST_CPU["encoder_cpu_s"] = sum(_cpu_s(p.pid) for p in procs) - cpu0
        await sub.unsubscribe()
        return elapsed
    finally:
        await bus.close()


_LAST_CPU: dict[str, float] = {}


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def until_pulling(bus: Bus, consumer: str, n: int, timeout: float = 60.0) -> None:
    """Wait until `n` processes are waiting on the consumer, so process start-up is not timed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await bus.waiting_pullers(consumer) >= n:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{n} {consumer} process(es) did not start pulling within {timeout:.0f}s")


def ffmpeg_cmd(exe: str, width: int, height: int, out: Path) -> list[str]:
    """The ffmpeg CLI encoding raw rgb24 from stdin with the encoder's settings (simreel.media.mp4):
    libx264 veryfast crf 23 yuv420p on one x264 thread, and the same colour conversion - BT.709
    limited range, bilinear with accurate rounding, bit-exact (ffmpeg's default is BT.601 with
    bicubic, a different and cheaper conversion) -, the same x264 asm level and bit-exact muxing.
    `same_pictures` checks that the two decode to the same frames."""
    asm = x264_asm()
    return [exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-r", "30", "-i", "-",
            "-vf", "scale=out_color_matrix=bt709:out_range=tv:flags=bilinear+accurate_rnd+bitexact",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", "-threads", "1",
            *(["-x264-params", f"asm={asm}"] if asm else []),
            "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
            "-fflags", "+bitexact", "-flags", "+bitexact", "-movflags", "+faststart", str(out)]


def _ffmpeg_fps(width: int, height: int, n: int, keep: Path | None = None) -> dict[str, float] | None:
    """The ffmpeg pipe's fps and CPU seconds; its video is copied to `keep` when given."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    pixels = _frames(width, height)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out.mp4"
        t0 = time.perf_counter()
        before = os.times()
        p = subprocess.Popen(ffmpeg_cmd(exe, width, height, out), stdin=subprocess.PIPE)
        for i in range(n):
            p.stdin.write(pixels[i % len(pixels)])
        p.stdin.close()
        p.wait()
        wall = time.perf_counter() - t0
        after = os.times()
        if p.returncode:
            raise RuntimeError(f"ffmpeg exited with {p.returncode}")
        if keep is not None:
            shutil.copyfile(out, keep)
    return {"fps": n / wall, "cpu_s": (after.children_user - before.children_user)
            + (after.children_system - before.children_system)}


def _pictures(path: Path) -> list[str]:
    """A digest of each decoded picture (all planes)."""
    import av

    with av.open(str(path)) as c:
        return [hashlib.sha256(b"".join(bytes(p) for p in f.planes)).hexdigest() for f in c.decode(video=0)]


def same_settings(width: int, height: int, n: int, encoder_sha256: str, ffmpeg_mp4: Path) -> dict[str, Any]:
    """Whether the comparison is at the same settings: the encoder service's file is byte-identical to
    Mp4Writer's for these frames, and ffmpeg's file decodes to the same pictures (its container
    bytes differ: stream headers, not pixels)."""
    pixels = _frames(width, height)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "writer.mp4"
        with Mp4Writer(path, width=width, height=height, fps=30) as w:
            for i in range(n):
                w.write(pixels[i % len(pixels)])
        ours = _pictures(path)
        return {"encoder_file_equals_mp4writer": w.close().sha256 == encoder_sha256,
                "ffmpeg_pictures_equal_encoder": _pictures(ffmpeg_mp4) == ours, "frames_compared": len(ours)}


def throughput(width: int = 640, height: int = 480, frames: int = 300, rounds: int = 3,
               compressions: tuple[str, ...] = ("zstd", "none")) -> dict[str, Any]:
    """Per round, side by side: an encoder process reading the frames from JetStream (once per frame
    compression) and the ffmpeg pipe."""
    rows = []
    check: dict[str, Any] | None = None
    for r in range(rounds):
        row: dict[str, Any] = {"round": r + 1}
        shas = {}
        for c in compressions:
            with tempfile.TemporaryDirectory() as d, Stack(data_dir=Path(d) / "data", out_dir=Path(d) / "out",
                                                           services=["uploader"]) as stack:
                secs = asyncio.run(_encode_runs(stack.url, stack, [f"tput-{c}-{r}"], width, height, frames,
                                                encoders=1, compression=c))
            row[f"simreel_fps_{c}"] = frames / secs
            row[f"simreel_cpu_ms_per_frame_{c}"] = 1000 * _LAST_CPU["encoder_cpu_s"] / frames
            shas[c] = _LAST_CPU["sha256"]
        row["same_video_every_compression"] = len(set(shas.values())) == 1
        with tempfile.TemporaryDirectory() as d:
            keep = Path(d) / "ffmpeg.mp4" if check is None else None
            ff = _ffmpeg_fps(width, height, frames, keep)
            if ff and keep is not None:  # once: it takes as long as a round
                check = same_settings(width, height, frames, shas[compressions[0]], keep)
        row["ffmpeg_pipe_fps"] = ff["fps"] if ff else None
        row["ffmpeg_cpu_ms_per_frame"] = 1000 * ff["cpu_s"] / frames if ff else None
        for c in compressions:
            row[f"ratio_{c}_over_ffmpeg"] = row[f"simreel_fps_{c}"] / ff["fps"] if ff else None
        rows.append(row)
    first = compressions[0]
    return {"size": f"{width}x{height}", "frames": frames, "rounds": rows, "same_settings": check,
            # the default transport's figures, as before
            "simreel_fps": min(x[f"simreel_fps_{first}"] for x in rows),
            "ffmpeg_pipe_fps": rows[-1]["ffmpeg_pipe_fps"],
            "ratio_simreel_over_ffmpeg": min(x[f"ratio_{first}_over_ffmpeg"] for x in rows) if rows[-1]["ffmpeg_pipe_fps"] else None,
            "note": "simreel time includes reading every frame back from JetStream; ratios are the worst round"
            if rows[-1]["ffmpeg_pipe_fps"] else "ffmpeg baseline skipped: pip install imageio-ffmpeg"}


def scaling(runs: int = 6, width: int = 320, height: int = 240, frames: int = 150) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs, "size": f"{width}x{height}", "frames_per_run": frames}
    for n in (1, 2):
        with tempfile.TemporaryDirectory() as d, Stack(data_dir=Path(d) / "data", out_dir=Path(d) / "out",
                                                       services=["uploader"]) as stack:
            ids = [f"scale{n}-{i}" for i in range(runs)]
            out[f"{n}_encoder_s"] = asyncio.run(_encode_runs(stack.url, stack, ids, width, height, frames, encoders=n))
    out["speedup_2_over_1"] = out["1_encoder_s"] / out["2_encoder_s"]
    return out


def latency(duration_s: float = 10.0, width: int = 640, height: int = 480, fps: int = 30) -> dict[str, Any]:
    req = ev.SimRequested(scene="cartpole", duration_s=duration_s, policy="random",
                          render=ev.RenderSpec(width=width, height=height, fps=fps, quality="fast"),
                          outputs=ev.OutputSpec(telemetry=False))
    with tempfile.TemporaryDirectory() as d, Stack(data_dir=Path(d) / "data", out_dir=Path(d) / "out") as stack:
        async def go():
            c = await Client.connect(NatsSettings(url=stack.url))
            try:
                seen: dict[str, float] = {}

                def on_event(e, state):
                    if isinstance(e, ev.EpisodeEnded):
                        seen["ended"] = e.ts
                    elif isinstance(e, ev.VideoAvailable):
                        seen["video"] = e.ts
                    elif isinstance(e, ev.ArtifactStored) and e.kind == "video":
                        seen["stored"] = e.ts

                r = await c.run(req, timeout=900, on_event=on_event)
                if not r.ok:
                    raise RuntimeError(f"latency run failed: {r.error}")
                return seen
            finally:
                await c.close()

        seen = asyncio.run(go())
    return {"clip_s": duration_s, "size": f"{width}x{height}",
            "episode_end_to_video_available_s": seen["video"] - seen["ended"],
            "episode_end_to_artifact_stored_s": seen["stored"] - seen["ended"]}


PARTS = ("throughput", "scaling", "latency")


def run_all(*, quick: bool = False, rounds: int | None = None, parts: tuple[str, ...] = PARTS,
            frames: int | None = None) -> dict[str, Any]:
    os.environ.setdefault("MUJOCO_GL", "egl")
    out: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_at_start": os.getloadavg(),
    }
    if "throughput" in parts:
        out["throughput"] = throughput(frames=frames or (120 if quick else 300), rounds=rounds or (1 if quick else 3))
    if "scaling" in parts:
        out["scaling"] = scaling(runs=4 if quick else 6, frames=60 if quick else 150)
    if "latency" in parts:
        out["latency"] = latency(duration_s=2.0 if quick else 10.0)
    out["load_average_at_end"] = os.getloadavg()
    return out


def cmd_pipeline(args) -> int:
    from rich.console import Console
    from rich.table import Table

    parts = tuple(p for p in args.parts.split(",") if p)
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"--parts: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    result = run_all(quick=args.quick, rounds=args.rounds, parts=parts, frames=args.frames)
    t = Table(title="simreel pipeline benchmark")
    t.add_column("measure")
    t.add_column("value")
    tp, sc, la = result.get("throughput"), result.get("scaling"), result.get("latency")
    for row in tp["rounds"] if tp else []:
        for key, value in row.items():
            if key.startswith("simreel_fps_") or key == "ffmpeg_pipe_fps":
                name = (f"encoder fps via JetStream, {key[len('simreel_fps_'):]} frames ({tp['size']})"
                        if key != "ffmpeg_pipe_fps" else "ffmpeg pipe fps (same settings)")
                t.add_row(f"round {row['round']}: {name}", f"{value:.1f}" if value else "-")
            elif key.startswith("ratio_") and value:
                t.add_row(f"round {row['round']}: {key.replace('_', ' ')}", f"{value:.2f}")
            elif key.startswith("simreel_cpu_ms_per_frame_") or key == "ffmpeg_cpu_ms_per_frame":
                t.add_row(f"round {row['round']}: {key.replace('_', ' ')}", f"{value:.2f}" if value else "-")
    if tp and tp.get("same_settings"):
        t.add_row("same settings: ffmpeg's pictures == the encoder's",
                  str(tp["same_settings"]["ffmpeg_pictures_equal_encoder"]))
    if sc:
        t.add_row(f"{sc['runs']} runs, 1 encoder (s)", f"{sc['1_encoder_s']:.2f}")
        t.add_row(f"{sc['runs']} runs, 2 encoders (s)", f"{sc['2_encoder_s']:.2f}")
        t.add_row("speedup 2 / 1", f"{sc['speedup_2_over_1']:.2f}")
    if la:
        t.add_row(f"episode end → VideoAvailable ({la['clip_s']:.0f} s clip)", f"{la['episode_end_to_video_available_s']:.3f} s")
        t.add_row("episode end → ArtifactStored", f"{la['episode_end_to_artifact_stored_s']:.3f} s")
    t.add_row("load average, start / end", f"{result['load_average_at_start'][0]:.1f} / {result['load_average_at_end'][0]:.1f}")
    Console(stderr=True).print(t)
    text = json.dumps(result, indent=2)
    if args.json == "-":
        print(text)
    else:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    return 0


def register(sub) -> None:
    p = sub.add_parser("pipeline", help="encoder throughput vs ffmpeg, 1 vs 2 encoders, end-to-end latency")
    p.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run)")
    p.add_argument("--rounds", type=int, default=None, help="throughput rounds (default 3, 1 with --quick)")
    p.add_argument("--frames", type=int, default=None, help="frames per throughput run (default 300, 120 with --quick)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"which parts to run (comma-separated: {', '.join(PARTS)})")
    p.add_argument("--json", default="simreel-out/bench-pipeline.json", help="where to write the JSON ('-' = stdout)")
    p.set_defaults(func=cmd_pipeline)

