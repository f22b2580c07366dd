"""One render-benchmark process for one GL backend, or for one render engine (`--engine`).

MUJOCO_GL is read once per process when `mujoco` is imported, so the CLI starts one of these per
backend with MUJOCO_GL set. With `--engine NAME --worlds N` it measures a render engine from
simreel.sim.engines instead (MuJoCo Warp, a plug-in, or `module:factory`): N worlds stepped and
rendered per batch, frames/s per world and in total, the engine's one-time warm-up (kernel compile)
reported apart and never timed. It measures every (scene × resolution × quality) job it is given and prints
ONE JSON object on stdout (the last line); logs go to stderr. It never dies with a traceback for an
unavailable backend: it reports `{"status": "unavailable", "reason": ...}` instead.

    MUJOCO_GL=egl python -m simreel.bench.worker --scene cartpole --res 640x480 --quality full --frames 60
    python -m simreel.bench.worker --engine mjwarp --worlds 1 --worlds 16 --res 160x120 --frames 30
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from simreel.runtime import config, log

__all__ = ["main", "run_jobs", "parse_res", "summarize"]

UNAVAILABLE_HINTS = {
    "egl": "apt-get install libegl1 libgl1-mesa-dri (or an NVIDIA driver with EGL)",
    "osmesa": "apt-get install libosmesa6",
    "glfw": "needs a display (X11/Wayland, or Xvfb) and libglfw3",
}


def parse_res(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        w_i, h_i = int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must look like 640x480, got {text!r}") from None
    if w_i <= 0 or h_i <= 0:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    return w_i, h_i


def summarize(values_ms: list[float]) -> dict[str, float] | None:
    if not values_ms:
        return None
    a = np.asarray(values_ms, dtype=float)
    return {
        "mean": round(float(a.mean()), 3),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "max": round(float(a.max()), 3),
    }


class _SplitTimer:
    """Times update_scene, draw (mjr_render + glFinish) and readback (mjr_readPixels + flip) apart.

    mujoco.Renderer.render() does draw+readback in one call; splitting them needs its internals
    (_rect, _mjr_context, _gl_context). If a future mujoco renames them, fall back to render()
    and report readback as null.
    """

    def __init__(self, renderer) -> None:
        import mujoco
        from OpenGL import GL

        self._mujoco, self._gl, self.r = mujoco, GL, renderer
        self.split = all(hasattr(renderer, a) for a in ("_rect", "_mjr_context", "_gl_context"))
        self._raw = np.empty((renderer.height, renderer.width, 3), dtype=np.uint8)

    def frame(self, data, camera, out: np.ndarray) -> tuple[float, float, float | None]:
        mj, r = self._mujoco, self.r
        t0 = time.perf_counter()
        r.update_scene(data, camera=camera)
        t1 = time.perf_counter()
        if not self.split:
            r.render(out=out)
            return (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3, None
        if r._gl_context is not None:
            r._gl_context.make_current()
        mj.mjr_render(r._rect, r.scene, r._mjr_context)
        self._gl.glFinish()
        t2 = time.perf_counter()
        mj.mjr_readPixels(self._raw, None, r._rect, r._mjr_context)
        out[:] = self._raw[::-1]
        t3 = time.perf_counter()
        return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3


def _one_job(scene: str, width: int, height: int, quality: str, *, frames: int, warmup: int, fps: float,
             camera: str | None, save_dir: Path | None, backend: str) -> dict[str, Any]:
    import mujoco

    from simreel.bench.png import write_png
    from simreel.sim import policies, rollout

    model, label = load_scene(scene, width, height)
    cam = rollout.make_camera(model, camera)
    renderer = rollout.make_renderer(model, width, height, quality)  # same setup as EpisodeRunner
    try:
        from simreel.sim.gl import gl_info

        info = gl_info()
        timer = _SplitTimer(renderer)
        data = mujoco.MjData(model)
        mujoco.mj_resetData(model, data)
        mujoco.mj_forward(model, data)
        policy = policies.make_policy("sine", model, seed=0)
        sched = rollout.FrameSchedule.of(model.opt.timestep, fps)
        buf = np.zeros((height, width, 3), dtype=np.uint8)
        upd, draw, read, total = [], [], [], []
        step, physics_s = 0, 0.0
        t_start = None
        for k in range(warmup + frames):
            if k == warmup:
                t_start = time.perf_counter()
            t0 = time.perf_counter()
            target = sched.step_for(k)
            while step < target:
                data.ctrl[:] = policy(model, data, data.time)
                mujoco.mj_step(model, data)
                step += 1
            t1 = time.perf_counter()
            u, d, rb = timer.frame(data, cam, buf)
            t2 = time.perf_counter()
            if k >= warmup:
                physics_s += t1 - t0
                upd.append(u)
                draw.append(d)
                if rb is not None:
                    read.append(rb)
                total.append((t2 - t1) * 1e3)
                if save_dir is not None:
                    write_png(save_dir / f"{backend}-{scene}-{width}x{height}-{quality}-{k - warmup:04d}.png", buf)
        wall = time.perf_counter() - (t_start or time.perf_counter())
        physics_steps = step - sched.step_for(warmup)
        render_total = sum(total)
        return {
            "scene": label,
            "width": width,
            "height": height,
            "quality": quality,
            "status": "ok",
            "frames": frames,
            "warmup": warmup,
            "fps": round(frames / wall, 2) if wall > 0 else None,
            "render_fps": round(frames / (render_total / 1e3), 2) if render_total > 0 else None,
            "physics_steps_per_s": round(physics_steps / physics_s, 1) if physics_s > 0 else None,
            "update_ms": summarize(upd),
            "render_ms": summarize(draw),
            "readback_ms": summarize(read),
            "frame_ms": summarize(total),
            "last_frame_mean": round(float(buf.mean()), 2),
            "gl": info,
        }
    finally:
        renderer.close()


def load_scene(scene: str, width: int, height: int):
    """(model, label) of a builtin name, inline MJCF, or — here only, the benchmark being run by the
    machine's owner — a path to an .xml file (e.g. one of Gymnasium's assets), with its folder as root."""
    from simreel.sim import loader

    path = Path(scene)
    if scene.endswith(".xml") and path.is_file():
        model = loader.load_path(path.name, roots=[path.resolve().parent], width=width, height=height)
        return model, path.stem
    return loader.resolve_scene(scene, width=width, height=height)


def _engine_job(engine: str, scene: str, width: int, height: int, quality: str, worlds: int, *, frames: int,
                warmup: int, fps: float, camera: str | None, options: dict[str, Any],
                save_dir: Path | None) -> dict[str, Any]:
    """The GL job's loop (physics to frame k/fps with the sine policy, then render), on a batch of
    `worlds`. `fps` counts every world's frame; `fps_per_world` is what one episode sees."""
    from simreel.bench.png import write_png
    from simreel.sim import engines, policies, rollout

    model, label = load_scene(scene, width, height)
    eng = engines.create(engine, model, width=width, height=height, cameras=[camera], worlds=worlds,
                         quality=quality, options=options)
    try:
        m = eng.model
        pols = [policies.make_policy("sine", m, seed=i) for i in range(worlds)]
        sched = rollout.FrameSchedule.of(m.opt.timestep, fps)
        eng.reset(list(range(worlds)))
        buf = np.zeros((worlds, *eng.frame_shape), dtype=np.uint8)
        ctrl = np.zeros((worlds, m.nu))
        step, physics_s = 0, 0.0
        render, total = [], []
        t_start = None
        for k in range(warmup + frames):
            if k == warmup:
                t_start = time.perf_counter()
            t0 = time.perf_counter()
            while step < sched.step_for(k):
                for i, (p, st) in enumerate(zip(pols, eng.states())):
                    ctrl[i] = p(m, st, st.time)
                eng.step(ctrl)
                step += 1
            t1 = time.perf_counter()
            eng.render(buf)
            t2 = time.perf_counter()
            if k >= warmup:
                physics_s += t1 - t0
                render.append((t2 - t1) * 1e3)
                total.append((t2 - t0) * 1e3)
                if save_dir is not None:
                    write_png(save_dir / f"{engine}-{scene}-{width}x{height}-{quality}-w{worlds}-{k - warmup:04d}.png",
                              buf[0])
        wall = time.perf_counter() - (t_start or time.perf_counter())
        physics_steps = step - sched.step_for(warmup)
        render_total = sum(render)
        info = eng.info
        return {
            "scene": label, "width": width, "height": height, "quality": quality, "status": "ok",
            "worlds": worlds, "frames": frames, "warmup": warmup,
            "fps": round(frames * worlds / wall, 2) if wall > 0 else None,
            "fps_per_world": round(frames / wall, 2) if wall > 0 else None,
            "render_fps": round(frames * worlds / (render_total / 1e3), 2) if render_total > 0 else None,
            "physics_steps_per_s": round(physics_steps * worlds / physics_s, 1) if physics_s > 0 else None,
            "update_ms": None, "readback_ms": None,
            "render_ms": summarize(render), "frame_ms": summarize(total),
            "warmup_s": round(info.warmup_s, 3),
            "last_frame_mean": round(float(buf[0].mean()), 2),
            "gl": {"backend": info.engine, "vendor": info.device, "renderer": info.renderer,
                   "version": "", "software": info.software},
            "engine": {"engine": info.engine, "device": info.device, "renderer": info.renderer,
                       "software": info.software, "warmup_s": round(info.warmup_s, 3), **info.details},
        }
    finally:
        eng.close()


def run_engine_jobs(args: argparse.Namespace) -> dict[str, Any]:
    """Every (scene × resolution × quality × worlds) job on one engine; an engine that cannot start is
    `unavailable` with the reason, a job that fails is an `error` row."""
    from simreel.sim import engines

    name = args.engine
    out: dict[str, Any] = {"backend": name, "engine": name, "status": "ok", "pid": os.getpid(), "results": []}
    options = dict(args.option or [])
    save_dir = Path(args.save_frames) if args.save_frames else None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    frames = args.frames if args.frames is not None else max(1, round(args.duration * args.fps))
    for scene in args.scene:
        for width, height in args.res:
            for quality in args.quality:
                for worlds in args.worlds or [1]:
                    job = {"scene": scene, "width": width, "height": height, "quality": quality, "worlds": worlds}
                    try:
                        r = _engine_job(name, scene, width, height, quality, worlds, frames=frames,
                                        warmup=args.warmup, fps=args.fps, camera=args.camera, options=options,
                                        save_dir=save_dir)
                    except engines.EngineUnavailable as e:
                        return {**out, "status": "unavailable", "reason": e.reason, "results": []}
                    except Exception as e:
                        log.get(__name__).warning("bench_job_failed", **job, error=str(e),
                                                  trace=traceback.format_exc(limit=3))
                        r = {**job, "status": "error", "reason": f"{type(e).__name__}: {e}"}
                    out["results"].append(r)
                    if r.get("status") == "ok" and "device" not in out:
                        out["device"] = r["engine"]["device"]
                        out["gl"] = r["gl"]
    return out


def run_jobs(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": backend, "status": "ok", "pid": os.getpid(), "results": []}
    from simreel.sim.gl import precheck

    why = precheck(backend)
    if why:
        return {**out, "status": "unavailable", "reason": why}
    try:
        import mujoco

        out["mujoco"] = mujoco.__version__
        ctx = mujoco.GLContext(16, 16)  # fail early and clearly if the backend cannot start
        ctx.make_current()
        from simreel.sim.gl import gl_info

        out["gl"] = gl_info()
        ctx.free()
    except BaseException as e:  # ImportError, RuntimeError, GLError ...: the backend cannot start
        if isinstance(e, KeyboardInterrupt):
            raise
        reason = f"{type(e).__name__}: {e}".strip()
        hint = UNAVAILABLE_HINTS.get(backend)
        return {**out, "status": "unavailable", "reason": reason + (f" (remedy: {hint})" if hint else "")}
    save_dir = Path(args.save_frames) if args.save_frames else None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    frames = args.frames if args.frames is not None else max(1, round(args.duration * args.fps))
    for scene in args.scene:
        for width, height in args.res:
            for quality in args.quality:
                job = {"scene": scene, "width": width, "height": height, "quality": quality}
                try:
                    out["results"].append(
                        _one_job(scene, width, height, quality, frames=frames, warmup=args.warmup, fps=args.fps,
                                 camera=args.camera, save_dir=save_dir, backend=backend)
                    )
                except Exception as e:
                    log.get(__name__).warning("bench_job_failed", **job, error=str(e),
                                              trace=traceback.format_exc(limit=3))
                    out["results"].append({**job, "status": "error", "reason": f"{type(e).__name__}: {e}"})
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simreel.bench.worker", description=__doc__.split("\n")[0])
    p.add_argument("--scene", action="append", default=None, help="builtin name, inline MJCF or file: (repeatable)")
    p.add_argument("--res", action="append", type=parse_res, default=None, help="WxH (repeatable)")
    p.add_argument("--quality", action="append", choices=("full", "fast"), default=None)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--frames", type=int, default=None)
    g.add_argument("--duration", type=float, default=None)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--camera", default=None)
    p.add_argument("--save-frames", default=None)
    p.add_argument("--engine", default=None, help="a render engine (mjwarp, a plug-in, module:factory) instead of GL")
    p.add_argument("--worlds", action="append", type=int, default=None, help="worlds per batch (repeatable)")
    p.add_argument("--option", action="append", type=parse_option, default=None, metavar="KEY=VALUE",
                   help="engine option, e.g. device=cpu (repeatable)")
    return p


def parse_option(text: str) -> tuple[str, Any]:
    """`key=value` with JSON values where they parse (true, 3, "x"), else the plain string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"engine option must look like key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    log.setup(level=config.log_level(default="warning"))  # stderr; stdout is for the JSON
    args = build_parser().parse_args(argv)
    args.scene = args.scene or ["cartpole"]
    args.res = args.res or [(640, 480)]
    args.quality = args.quality or ["full"]
    if args.frames is None and args.duration is None:
        args.frames = 60
    if args.engine:
        result = run_engine_jobs(args)
    else:
        result = run_jobs(args, os.environ.get("MUJOCO_GL", ""))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
