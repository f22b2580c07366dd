"""`simreel bench`: how fast does this machine render MuJoCo headless, and with which GL?

    simreel bench                       # = bench render: egl, cartpole, 640x480, full quality
    simreel bench render --backend osmesa --quality fast --frames 120 --json out.json
    simreel bench compare --backend egl --backend osmesa --scene cartpole --scene apartment \
                          --quality full --quality fast --res 320x240 --res 640x480
    simreel bench compare --engine mjwarp --worlds 1 --worlds 16 --res 160x120 --quality fast
    simreel bench render --engine mjwarp --worlds 64 --option device=cuda
    simreel bench scenes

`--engine` adds a render engine (simreel.sim.engines: `mjwarp`, an installed plug-in, or a
`module:factory` path) that steps and renders `--worlds N` worlds per batch; its rows show frames/s
in total and per world, and its one-time warm-up (kernel compile) apart from the timed frames.

Each backend is measured in its own process (`python -m simreel.bench.worker`), because MUJOCO_GL
is fixed per process when mujoco is imported. A backend that cannot start is reported as
`unavailable` with the reason, never as a traceback. The printed GL renderer string tells whether a
GPU is used at all ("llvmpipe" = CPU rasterizer; see docs/gpu.md).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from simreel.runtime import config
from simreel.bench.worker import parse_option, parse_res

__all__ = ["register", "main", "run_backend", "run_engine", "cmd_render", "cmd_compare", "cmd_scenes"]

BACKENDS = ("egl", "osmesa", "glfw")
DEFAULT_COMPARE_JSON = "simreel-out/bench-compare.json"


def _default_backend() -> str:
    env = os.environ.get("MUJOCO_GL", "").lower()
    return env if env in BACKENDS else "egl"


def run_backend(backend: str, worker_args: list[str], *, timeout: float = 600.0) -> dict[str, Any]:
    """Run the worker with MUJOCO_GL=backend; always returns a dict with `status`."""
    env = {**os.environ, "MUJOCO_GL": backend}
    env.pop("PYOPENGL_PLATFORM", None)  # mujoco's backend module sets the matching one
    cmd = [sys.executable, "-m", "simreel.bench.worker", *worker_args]
    base = {"backend": backend, "results": []}
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**base, "status": "unavailable", "reason": f"benchmark worker timed out after {timeout:.0f}s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    tail = " | ".join(ln.strip() for ln in proc.stderr.strip().splitlines()[-3:]) or "no output"
    how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
    return {**base, "status": "unavailable", "reason": f"worker failed ({how}): {tail}"}


def run_engine(engine: str, worker_args: list[str], *, timeout: float = 1800.0) -> dict[str, Any]:
    """Run the worker for a render engine; always returns a dict with `status`."""
    result = run_backend(_default_backend(), ["--engine", engine, *worker_args],
                         timeout=timeout)
    result.setdefault("engine", engine)
    if result.get("status") != "ok":
        result["backend"] = engine
    return result


def _engine_args(args: argparse.Namespace, worlds: list[int]) -> list[str]:
    out: list[str] = []
    for w in worlds:
        out += ["--worlds", str(w)]
    for key, value in getattr(args, "option", None) or []:
        out += ["--option", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return out


def _worker_args(args: argparse.Namespace, scenes: list[str], res: list[tuple[int, int]], qualities: list[str]) -> list[str]:
    out: list[str] = []
    for s in scenes:
        out += ["--scene", s]
    for w, h in res:
        out += ["--res", f"{w}x{h}"]
    for q in qualities:
        out += ["--quality", q]
    if args.duration is not None:
        out += ["--duration", str(args.duration)]
    else:
        out += ["--frames", str(args.frames if args.frames is not None else 60)]
    out += ["--warmup", str(args.warmup), "--fps", str(args.fps)]
    if args.camera:
        out += ["--camera", args.camera]
    if getattr(args, "save_frames", None):
        out += ["--save-frames", str(args.save_frames)]
    return out


def _report(kind: str, backends: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "tool": "simreel bench",
        "kind": kind,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "backends": backends,
    }


def _write_json(path: str | None, report: dict[str, Any], console: Console) -> None:
    if not path:
        return
    text = json.dumps(report, indent=2)
    if path == "-":
        sys.stdout.write(text + "\n")
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text + "\n")
    console.print(f"JSON written to [bold]{p}[/]")


def _ms(stats: dict[str, float] | None, key: str) -> str:
    return "-" if not stats else f"{stats[key]:.2f}"


def _console(json_to_stdout: bool = False) -> Console:
    """Tables go to stderr when stdout carries the JSON (`--json -`). Not a terminal (CI logs,
    pipes): rich would wrap at 80 columns and squash the tables, so use a wide fixed width."""
    stream = sys.stderr if json_to_stdout else sys.stdout
    return Console(file=stream) if stream.isatty() else Console(file=stream, width=160)


def _gl_line(b: dict[str, Any]) -> str:
    if b.get("status") != "ok":
        return f"[bold]{b['backend']}[/]: [red]unavailable[/] — {b.get('reason')}"
    gl = b.get("gl", {})
    if b.get("engine"):
        kind = "[yellow]CPU device[/]" if gl.get("software") else "[green]GPU[/]"
        warm = [f"{r['worlds']}w {r['warmup_s']:.1f}s" for r in b.get("results", []) if r.get("status") == "ok"]
        return (f"[bold]{b['backend']}[/]: {gl.get('renderer')} | device {gl.get('vendor')}  {kind}  "
                f"warm-up (kernel compile, not timed): {', '.join(warm) or '-'}")
    kind = "[yellow]software rendering (no GPU)[/]" if gl.get("software") else "[green]hardware[/]"
    return f"[bold]{b['backend']}[/]: {gl.get('vendor')} | {gl.get('renderer')} | {gl.get('version')}  {kind}"


def _table(backends: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title)
    cols = ("backend", "scene", "size", "quality", "worlds", "fps total", "fps/world", "warm-up s",
            "render p50/p95 ms", "readback p50 ms", "update p50 ms", "frame max ms", "physics steps/s")
    for col in cols:
        t.add_column(col, justify="left" if col in ("backend", "scene", "quality") else "right")
    blank = [""] * (len(cols) - 6)
    for b in backends:
        if b.get("status") != "ok":
            t.add_row(b["backend"], "-", "-", "-", "-", "[red]unavailable[/]", *blank)
            continue
        for r in b["results"]:
            size = f"{r['width']}x{r['height']}"
            worlds = str(r.get("worlds", 1))
            if r.get("status") != "ok":
                t.add_row(b["backend"], r["scene"], size, r["quality"], worlds, "[red]error[/]", *blank)
                continue
            per_world = r.get("fps_per_world", r["fps"])
            warm = r.get("warmup_s")
            t.add_row(
                b["backend"], r["scene"], size, r["quality"], worlds, f"{r['fps']:.1f}", f"{per_world:.1f}",
                "-" if warm is None else f"{warm:.1f}",
                f"{_ms(r['render_ms'], 'p50')}/{_ms(r['render_ms'], 'p95')}", _ms(r["readback_ms"], "p50"),
                _ms(r["update_ms"], "p50"), _ms(r["frame_ms"], "max"),
                f"{r['physics_steps_per_s']:,.0f}" if r["physics_steps_per_s"] else "-",
            )
    return t


def _print_results(console: Console, backends: list[dict[str, Any]], title: str) -> None:
    console.print(_table(backends, title))
    for b in backends:
        console.print(_gl_line(b))
        for r in b.get("results", []):
            if r.get("status") != "ok":
                console.print(f"  [red]error[/] {r['scene']} {r['width']}x{r['height']} {r['quality']}: {r.get('reason')}")
    if any(b.get("engine") for b in backends):
        console.print("fps total = frames of every world per second; GL renders one world at a time "
                      "(its total is its per-world rate)")


def cmd_render(args: argparse.Namespace) -> int:
    console = _console(args.json == "-")
    wargs = _worker_args(args, [args.scene], [(args.width, args.height)], [args.quality])
    if getattr(args, "engine", None):
        backend = args.engine
        result = run_engine(backend, wargs + _engine_args(args, args.worlds or [1]), timeout=args.timeout)
    else:
        backend = args.backend or _default_backend()
        result = run_backend(backend, wargs, timeout=args.timeout)
    report = _report("render", [result])
    if result.get("status") != "ok":
        console.print(f"[bold red]{backend} unavailable[/]: {result.get('reason')}")
        _write_json(args.json, report, console)
        return 2
    _print_results(console, [result], "simreel bench render")
    _write_json(args.json, report, console)
    return 0 if all(r.get("status") == "ok" for r in result["results"]) else 1


def resolutions(args: argparse.Namespace) -> list[tuple[int, int]]:
    """--res WxH (repeatable) and/or --width/--height (one more size, as `bench render` takes it)."""
    res = list(args.res or [])
    if args.width is not None or args.height is not None:
        res.append((args.width or 640, args.height or 480))
    return res or [(640, 480)]


def cmd_compare(args: argparse.Namespace) -> int:
    console = _console(args.json == "-")
    backends = list(dict.fromkeys(args.backend or BACKENDS))
    scenes = list(dict.fromkeys(args.scene or ["cartpole"]))
    qualities = list(dict.fromkeys(args.quality or ["full", "fast"]))
    res = list(dict.fromkeys(resolutions(args)))
    worlds = list(dict.fromkeys(args.worlds or [1]))
    results = []
    for b in backends:
        console.print(f"measuring [bold]{b}[/] ...")
        results.append(run_backend(b, _worker_args(args, scenes, res, qualities), timeout=args.timeout))
    for e in dict.fromkeys(args.engine or []):
        console.print(f"measuring engine [bold]{e}[/] with {', '.join(map(str, worlds))} world(s) "
                      "(the first run compiles its kernels) ...")
        results.append(run_engine(e, _worker_args(args, scenes, res, qualities) + _engine_args(args, worlds),
                                  timeout=args.timeout))
    _print_results(console, results, "simreel bench compare")
    _write_json(args.json, _report("compare", results), console)
    return 0 if any(r.get("status") == "ok" for r in results) else 2


def cmd_scenes(args: argparse.Namespace) -> int:
    from simreel.sim import loader, scenes

    console = _console()
    rows = []
    for name, info in scenes.BUILTIN.items():
        model, _ = loader.resolve_scene(name)
        g = model.vis.global_
        rows.append({
            "name": name, "bodies": model.nbody - 1, "geoms": model.ngeom, "lights": model.nlight,
            "actuators": model.nu, "cameras": loader.camera_names(model), "timestep": model.opt.timestep,
            "offscreen": f"{g.offwidth}x{g.offheight}", "description": info.description,
        })
    t = Table(title="simreel builtin scenes")
    for col in ("name", "bodies", "geoms", "lights", "actuators", "offscreen buffer", "description"):
        t.add_column(col, justify="right" if col in ("bodies", "geoms", "lights", "actuators") else "left")
    for r in rows:
        t.add_row(r["name"], str(r["bodies"]), str(r["geoms"]), str(r["lights"]), str(r["actuators"]),
                  r["offscreen"], r["description"])
    if args.json == "-":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    console.print(t)
    _write_json(args.json, {"scenes": rows}, console)
    return 0


def _worlds(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"worlds must be a whole number >= 1, got {text!r}")
    return n


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--frames", type=int, default=None, help="frames to time (default 60)")
    g.add_argument("--duration", type=float, default=None, metavar="SEC", help="simulated seconds to time")
    p.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed frames first (default 5)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate; sets physics steps between frames")
    p.add_argument("--camera", default=None, help="camera name (default: the scene's first)")
    p.add_argument("--save-frames", default=None, metavar="DIR", help="write the timed frames as PNG")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per backend or engine before giving up")
    p.add_argument("--option", action="append", type=parse_option, default=None, metavar="KEY=VALUE",
                   help="render-engine option, e.g. device=cuda or deterministic=true (repeatable)")


def _add_render(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("render", help="measure one backend", description="Measure one GL backend.")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="default: $MUJOCO_GL or egl")
    p.add_argument("--engine", default=None, help="measure a render engine instead (mjwarp, a plug-in, module:factory)")
    p.add_argument("--worlds", action="append", type=_worlds, default=None, metavar="N",
                   help="worlds per batch for --engine (repeatable; default 1)")
    p.add_argument("--scene", default="cartpole")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--quality", choices=("full", "fast"), default="full")
    p.add_argument("--json", default=None, metavar="PATH", help="write the report as JSON ('-' = stdout)")
    _common(p)
    p.set_defaults(func=cmd_render)
    return p


def register(subparsers) -> argparse.ArgumentParser:
    """Add `bench` (render / compare / scenes) to an argparse subparsers object."""
    bench = subparsers.add_parser("bench", help="render benchmark (GL backends, scenes)", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = bench.add_subparsers(dest="bench_command", metavar="{render,compare,scenes,pipeline}")
    render = _add_render(sub)

    c = sub.add_parser("compare", help="backends x scenes x qualities x resolutions in one table")
    c.add_argument("--backend", action="append", choices=BACKENDS, default=None, help=f"repeatable; default {BACKENDS}")
    c.add_argument("--scene", action="append", default=None, help="repeatable; default cartpole")
    c.add_argument("--quality", action="append", choices=("full", "fast"), default=None, help="repeatable; default both")
    c.add_argument("--res", action="append", type=parse_res, default=None, metavar="WxH", help="repeatable; default 640x480")
    c.add_argument("--width", type=int, default=None, help="with --height: one more resolution (as in bench render)")
    c.add_argument("--height", type=int, default=None, help="with --width: one more resolution (as in bench render)")
    c.add_argument("--engine", action="append", default=None,
                   help="also measure a render engine (mjwarp, a plug-in, module:factory); repeatable")
    c.add_argument("--worlds", action="append", type=_worlds, default=None, metavar="N",
                   help="worlds per batch for the engines (repeatable; default 1)")
    c.add_argument("--json", default=DEFAULT_COMPARE_JSON, metavar="PATH", help=f"default {DEFAULT_COMPARE_JSON}")
    _common(c)
    c.set_defaults(func=cmd_compare)

    s = sub.add_parser("scenes", help="list the builtin scenes")
    s.add_argument("--json", default=None, metavar="PATH", help="also write JSON ('-' = JSON only, to stdout)")
    s.set_defaults(func=cmd_scenes)

    from simreel.bench.pipeline import register as register_pipeline

    register_pipeline(sub)

    def bare_bench(args: argparse.Namespace) -> int:
        """`simreel bench` alone = `simreel bench render` with its defaults."""
        defaults = render.parse_args([])
        for key, value in vars(args).items():
            if not hasattr(defaults, key):
                setattr(defaults, key, value)
        return cmd_render(defaults)

    bench.set_defaults(func=bare_bench)
    return bench


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m simreel.bench ...`), same commands as `simreel bench ...`."""
    from simreel.runtime import log

    log.setup(level=config.log_level(default="warning"))
    parser = argparse.ArgumentParser(prog="python -m simreel.bench")
    subs = parser.add_subparsers(dest="command")
    register(subs)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "bench":
        argv = ["bench", *argv]
    args = parser.parse_args(argv)
    return int(args.func(args))
