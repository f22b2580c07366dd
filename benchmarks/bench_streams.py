"""What does each perception stream cost over RGB alone? Render, transport, encode, stored bytes.

For a builtin scene (arm2) and Gymnasium's half_cheetah.xml, side by side in one run, one episode
rendered by the simulator's EpisodeRunner for each set of streams (rgb; rgb+depth; rgb+segmentation;
all three), then:

- render: wall and CPU milliseconds per frame (CPU of the whole process: llvmpipe renders on threads);
- transport: the frame as the simulator publishes it (zstd level 1, one zstd frame per video frame):
  bytes per frame, and each plane's own compressed bytes; CPU milliseconds per frame to compress;
- encode: CPU milliseconds per frame of the encoder's writers for each stream (rgb: the MP4; depth /
  segmentation: the FFV1 file, the colour mapping and the preview MP4), one thread;
- stored: bytes per frame of every file.

Then the lossless format choice for depth on the same frames: FFV1 gray16le in Matroska against
16-bit PNG frames in a zip (bytes per frame, encode and decode milliseconds per frame).

And the Gymnasium drop-in's cost of depth: HalfCheetah-v5's `env.render()` alone against
`env.render()` plus the depth buffer of that render (simreel.gym's path), plus Gymnasium's
`depth_array` (a second render), and its `rgbd_tuple` (one render for both), each converted and
quantised.

    python -m benchmarks.bench_streams [--frames 60] [--size 320x240] [--json out.json]
"""
from __future__ import annotations

import argparse
import functools
import io
import os
import tempfile
import threading
import time
import zipfile
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from benchmarks.report import emit, machine  # noqa: E402
from simreel.transport import framecodec  # noqa: E402
from simreel.contract import streams

SCENES = ["arm2", "half_cheetah.xml"]
SETS = [("rgb",), ("rgb", "depth"), ("rgb", "segmentation"), ("rgb", "depth", "segmentation")]


def _model(scene: str, width: int, height: int):
    from simreel.sim import loader

    if scene.endswith(".xml"):
        import gymnasium

        assets = Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets"
        return loader.load_path(scene, roots=[assets], width=width, height=height)
    return loader.resolve_scene(scene, {}, (), width, height)[0]


def render(model, width: int, height: int, n: int, wanted: tuple[str, ...]) -> tuple[list[bytes], float, float]:
    """(frames as the simulator's worker packs them, wall ms/frame, CPU ms/frame) of rendering."""
    from simreel.sim import policies
    from simreel.sim.rollout import EpisodeRunner

    out: list[bytes] = []
    timing: dict[str, float] = {}

    def body() -> None:
        runner = EpisodeRunner(model, width=width, height=height, fps=30, quality="full", streams=wanted)
        try:
            cpu0 = time.process_time()
            s = runner.run_episode(
                seed=0, policy=policies.make_policy("random", model, seed=0), duration_s=n / 30,
                on_frame=lambda f: out.append(b"".join([f.pixels.tobytes(),
                                                        *(f.planes[x].tobytes() for x in wanted[1:])])))
            timing["cpu"] = time.process_time() - cpu0
            timing["render_ms"] = s.render_ms_total
            timing["physics_ms"] = s.physics_ms_total
        finally:
            runner.close()

    t = threading.Thread(target=body)
    t.start()
    t.join()
    frames = len(out)
    # process CPU includes physics and the copies; physics is the same for every set of streams
    return out, timing["render_ms"] / frames, timing["cpu"] * 1e3 / frames


def transport(frames: list[bytes], width: int, height: int, wanted: tuple[str, ...]) -> dict:
    c = framecodec.FrameCompressor()
    cpu0 = time.process_time()
    sizes = [len(c.compress(f)) for f in frames]
    cpu = (time.process_time() - cpu0) * 1e3 / len(frames)
    per_plane = {}
    for x in wanted:
        pc = framecodec.FrameCompressor()
        per_plane[x] = round(float(np.mean([len(pc.compress(streams.planes(f, width, height, wanted)[x]))
                                            for f in frames])))
    return {"raw_bytes": len(frames[0]), "zstd_bytes": round(float(np.mean(sizes))), "zstd_cpu_ms": round(cpu, 3),
            "zstd_bytes_by_plane": per_plane}


def encode(frames: list[bytes], width: int, height: int, wanted: tuple[str, ...], model) -> dict:
    """Each stream's writers as the encoder runs them (one thread: pipelined=False), CPU ms and bytes."""
    from simreel.media.colormap import DepthColours, segmentation_rgb
    from simreel.media.lossless import LosslessWriter
    from simreel.media.mp4 import Mp4Writer
    from simreel.sim import perception

    out: dict = {}
    with tempfile.TemporaryDirectory() as d:
        first = streams.planes(frames[0], width, height, wanted)
        for x in wanted:
            cpu0 = time.process_time()
            if x == "rgb":
                w = Mp4Writer(Path(d) / "rgb.mp4", width=width, height=height, fps=30, pipelined=False)
                for f in frames:
                    w.write(streams.planes(f, width, height, wanted)["rgb"])
                files = {"mp4": w.close().bytes}
            else:
                shape = (height, width) + ((4,) if x == "segmentation" else ())
                dtype = "<u2" if x == "depth" else np.uint8
                if x == "depth":
                    near, far = perception.preview_range(np.frombuffer(first["depth"], dtype), (0.0, 1.0))
                    colours = DepthColours(near, far)
                else:
                    lut = streams.id_colours(perception.perception(model, wanted))
                    colours = functools.partial(segmentation_rgb, lut=lut)
                lossless = LosslessWriter(Path(d) / f"{x}.mkv", width=width, height=height, fps=30,
                                          pix_fmt=streams.PIX_FMT[x])
                preview = Mp4Writer(Path(d) / f"{x}.mp4", width=width, height=height, fps=30, pipelined=False)
                for f in frames:
                    arr = np.frombuffer(streams.planes(f, width, height, wanted)[x], dtype).reshape(shape)
                    lossless.write(arr)
                    preview.write(colours(arr))
                files = {"mkv": lossless.close().bytes, "mp4 preview": preview.close().bytes}
            out[x] = {"encode_cpu_ms": round((time.process_time() - cpu0) * 1e3 / len(frames), 3),
                      "stored_bytes_per_frame": {k: round(v / len(frames)) for k, v in files.items()}}
    return out


def depth_formats(frames: list[bytes], width: int, height: int, wanted: tuple[str, ...]) -> dict:
    """FFV1/MKV against 16-bit PNG frames in a zip, on the same depth planes."""
    import av

    from simreel.media.lossless import LosslessWriter, read_frames

    depth = [np.frombuffer(streams.planes(f, width, height, wanted)["depth"], "<u2").reshape(height, width)
             for f in frames]
    n = len(depth)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.process_time()
        w = LosslessWriter(Path(d) / "d.mkv", width=width, height=height, fps=30, pix_fmt="gray16le")
        for a in depth:
            w.write(a)
        size = w.close().bytes
        t1 = time.process_time()
        back = read_frames(Path(d) / "d.mkv")
        t2 = time.process_time()
        assert all(np.array_equal(a, b) for a, b in zip(depth, back))
        out["ffv1_mkv"] = {"bytes_per_frame": round(size / n), "encode_ms": round((t1 - t0) * 1e3 / n, 3),
                           "decode_ms": round((t2 - t1) * 1e3 / n, 3)}
    t0 = time.process_time()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i, a in enumerate(depth):
            cc = av.CodecContext.create("png", "w")
            cc.width, cc.height, cc.pix_fmt = width, height, "gray16be"
            frame = av.VideoFrame.from_ndarray(a, format="gray16le").reformat(format="gray16be")
            z.writestr(f"{i:06d}.png", b"".join(bytes(p) for p in [*cc.encode(frame), *cc.encode(None)]))
    t1 = time.process_time()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        for i, name in enumerate(z.namelist()):
            cc = av.CodecContext.create("png", "r")
            got = cc.decode(av.Packet(z.read(name)))[0].to_ndarray(format="gray16le")
            assert np.array_equal(got, depth[i])
    t2 = time.process_time()
    out["png16_zip"] = {"bytes_per_frame": round(len(buf.getvalue()) / n), "encode_ms": round((t1 - t0) * 1e3 / n, 3),
                        "decode_ms": round((t2 - t1) * 1e3 / n, 3)}
    return out


def gym_depth(width: int, height: int, steps: int) -> dict:
    """HalfCheetah-v5: env.render() alone vs env.render() + depth as simreel.gym reads it."""
    import gymnasium as gym

    from simreel.sim import perception

    env = gym.make("HalfCheetah-v5", render_mode="rgb_array", width=width, height=height)
    env.reset(seed=0)
    env.action_space.seed(0)
    u = env.unwrapped
    r = u.mujoco_renderer

    def depth(z):
        return streams.quantise_depth(perception.zbuffer_metres(z, u.model))

    def same_render():
        """simreel.gym's path: env.render(), then the depth buffer of that very render."""
        import mujoco

        env.render()
        v = r.viewer
        z = np.empty((v.viewport.height, v.viewport.width), np.float32)
        mujoco.mjr_readPixels(None, z, v.viewport, v.con)
        return depth(z[::-1])

    variants = {
        "rgb": lambda: env.render(),
        "rgb+depth (simreel.gym: the same render's depth buffer)": same_render,
        # Gymnasium keeps a viewer, and a GL context, per render mode: a second render, contexts switched
        "rgb+depth_array (a second render)": lambda: (env.render(), depth(r.render("depth_array"))),
        # one render giving both, which would bypass the wrappers' render()
        "rgbd_tuple (one render)": lambda: depth(r.render("rgbd_tuple")[1]),
    }
    result: dict = {}
    for _ in range(3):
        for label, fn in variants.items():
            fn()  # the mode's viewer, made once
            wall = cpu = 0.0
            for _ in range(steps):
                env.step(env.action_space.sample())
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall += time.perf_counter() - t0
                cpu += time.process_time() - c0
            result.setdefault(label, []).append((wall * 1e3 / steps, cpu * 1e3 / steps))
    env.close()
    out = {label: {"wall_ms": round(float(np.median([x[0] for x in v])), 3),
                   "cpu_ms": round(float(np.median([x[1] for x in v])), 3)} for label, v in result.items()}
    for label in variants:
        out[label]["wall_over_rgb"] = round(out[label]["wall_ms"] / out["rgb"]["wall_ms"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--rounds", type=int, default=3, help="render rounds, the sets of streams interleaved")
    ap.add_argument("--json", nargs="?", const="benchmarks/out/streams.json")
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    out: dict = {**machine(), "size": args.size, "frames": args.frames, "rounds": args.rounds,
                 "load_average_start": [round(x, 2) for x in os.getloadavg()], "scenes": {}}
    for scene in SCENES:
        model = _model(scene, width, height)
        render(model, width, height, 5, SETS[-1])  # warm-up: llvmpipe's first frames compile shaders
        timings: dict[tuple, list[tuple[float, float]]] = {w: [] for w in SETS}
        frames_of: dict[tuple, list[bytes]] = {}
        for _ in range(args.rounds):
            for wanted in SETS:
                frames_of[wanted], render_ms, cpu_ms = render(model, width, height, args.frames, wanted)
                timings[wanted].append((render_ms, cpu_ms))
        rows = {}
        for wanted in SETS:
            frames = frames_of[wanted]
            rows["+".join(wanted)] = {
                "render_wall_ms": round(float(np.median([t[0] for t in timings[wanted]])), 3),
                "render_wall_ms_rounds": [round(t[0], 2) for t in timings[wanted]],
                "process_cpu_ms": round(float(np.median([t[1] for t in timings[wanted]])), 3),
                "transport": transport(frames, width, height, wanted),
                "encode": encode(frames, width, height, wanted, model)}
        out.setdefault("depth_format", {})[scene] = depth_formats(frames_of[SETS[-1]], width, height, SETS[-1])
        base = rows["rgb"]
        for key, r in rows.items():
            r["render_over_rgb"] = round(r["render_wall_ms"] / base["render_wall_ms"], 2)
            r["zstd_bytes_over_rgb"] = round(r["transport"]["zstd_bytes"] / base["transport"]["zstd_bytes"], 2)
            r["encode_cpu_over_rgb"] = round(sum(x["encode_cpu_ms"] for x in r["encode"].values())
                                             / base["encode"]["rgb"]["encode_cpu_ms"], 2)
        out["scenes"][scene] = rows
    out["gym_half_cheetah_drop_in"] = gym_depth(width, height, args.frames)
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return emit(out, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
