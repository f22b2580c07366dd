"""Real service processes of a test stack: read their logs, find which replica holds a run, kill it,
hold a run mid-episode with the gated policy."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any


GATED_POLICY = "entrypoint:tests.support.policies:gated"


class Gate:
    """Holds runs that use GATED_POLICY at sim time `at_s` until opened (see policies.gated)."""

    def __init__(self, path: Path, at_s: float = 1.0) -> None:
        self.path, self.at_s = Path(path), at_s
        self.path.unlink(missing_ok=True)

    @property
    def params(self) -> dict[str, Any]:
        return {"gate": str(self.path), "at_s": self.at_s}

    def open(self) -> None:
        self.path.touch()


def log_has(path: Path, *needles: str) -> bool:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return False
    return any(all(n in line for n in needles) for line in text.splitlines())


def log_lines(path: Path, *needles: str) -> list[dict]:
    out = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            if all(n in line for n in needles):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
    return out


def holder_of(stack, service: str, run_id: str, needle: str) -> subprocess.Popen | None:
    """The live replica of `service` whose log says it took `run_id` (`needle` is the log event)."""
    for i, proc in enumerate(stack.procs.get(service, [])):
        if proc.poll() is None and log_has(stack.log_dir / f"{service}-{i}.log", f'"{needle}"', f'"run_id": "{run_id}"'):
            return proc
    return None


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=timeout)


def env_with(**kw: str) -> dict[str, str]:
    e = dict(os.environ)
    e.update(kw)
    return e
