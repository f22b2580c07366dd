"""The lint and the layers are part of the test suite: `make test` fails when either breaks.

ruff checks the whole tree with the rules in pyproject.toml. import-linter checks the contracts in
pyproject.toml against one `simreel` package: the library (libs/simreel) and its services (services/,
installed as simreel.services) live in two directories, so the check runs on a merged copy of their
Python files, found first on PYTHONPATH.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=240, **kw)


def _merged_package(dest: Path) -> Path:
    py = shutil.ignore_patterns("__pycache__", "static", "*.xml")
    shutil.copytree(ROOT / "libs" / "simreel", dest / "simreel", ignore=py)
    shutil.copytree(ROOT / "services", dest / "simreel" / "services", ignore=py)
    return dest


def test_ruff_finds_nothing():
    done = _run([str(BIN / "ruff"), "check", "--no-cache", "."])
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_contracts_hold(tmp_path):
    path = _merged_package(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(path)}
    done = _run([str(BIN / "lint-imports"), "--no-cache", str(ROOT / "pyproject.toml")], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout, done.stdout


def test_the_contracts_catch_a_service_importing_another(tmp_path):
    """The check is live: a service that imports another breaks the independence contract."""
    path = _merged_package(tmp_path)
    with open(path / "simreel" / "services" / "uploader" / "service.py", "a") as f:
        f.write("\nfrom simreel.services.encoder import handlers as _crossing  # noqa: E402,F401\n")
    env = {**os.environ, "PYTHONPATH": str(path)}
    done = _run([str(BIN / "lint-imports"), "--no-cache", str(ROOT / "pyproject.toml")], env=env)
    assert done.returncode != 0
    assert "services are independent" in done.stdout and "BROKEN" in done.stdout, done.stdout
