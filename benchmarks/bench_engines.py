"""Render engines side by side: MuJoCo Warp (CPU device) vs mujoco.Renderer (EGL), full and fast.

Gymnasium's half_cheetah.xml and the builtin apartment, at 160×120 and 640×480; MuJoCo Warp at
1 / 4 / 16 worlds, EGL one world at a time. Physics (sine policy) is inside the timed frames, as in
a run. MuJoCo Warp's kernel compile is reported apart (`warmup_s`), never timed. One
`simreel bench compare` run, so every row shares the machine's load of the moment.

    python -m benchmarks.bench_engines [--frames 20] [--json benchmarks/out/engines.json]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")


def half_cheetah() -> str:
    import gymnasium

    return str(Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets" / "half_cheetah.xml")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--worlds", type=int, action="append", default=None)
    p.add_argument("--res", action="append", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default="benchmarks/out/engines.json")
    a = p.parse_args(argv)
    from simreel.bench import cli

    args = ["compare", "--backend", "egl", "--engine", "mjwarp", "--option", f"device={a.device}",
            "--scene", half_cheetah(), "--scene", "apartment", "--quality", "full", "--quality", "fast",
            "--frames", str(a.frames), "--warmup", str(a.warmup), "--json", a.json]
    for r in a.res or ["160x120", "640x480"]:
        args += ["--res", r]
    for w in a.worlds or [1, 4, 16]:
        args += ["--worlds", str(w)]
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
