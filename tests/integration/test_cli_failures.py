"""How `simreel` shows a failure: one line with its cause, and the path of the log that has the details."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SIMREEL = [sys.executable, "-m", "simreel.cli"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SIMREEL_")}


def test_a_failed_run_is_one_line_and_the_failing_services_log(tmp_path):
    proc = subprocess.run([*SIMREEL, "run", "no-such-scene", "--duration", "0.2", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=240, env=_env(), cwd=tmp_path)
    assert proc.returncode == 1
    err = proc.stderr
    assert "Traceback" not in err and '"exc_info"' not in err and '"locals"' not in err, err[-3000:]
    failed = [ln for ln in err.splitlines() if "failed:" in ln]
    assert len(failed) == 1 and "[scene_invalid]" in failed[0] and "no-such-scene" in failed[0], err[-3000:]
    details = re.findall(r"^details: (.+)$", err, re.M)
    assert len(details) == 1, err[-3000:]
    log = Path(details[0])
    assert log.name == "simulator-0.log" and log.is_file()
    assert "no-such-scene" in log.read_text()  # the details are where the line says


def test_a_failure_before_any_run_is_one_line(tmp_path):
    env = {**_env(), "SIMREEL_NATS_CONNECT_TIMEOUT_S": "1"}
    proc = subprocess.run([*SIMREEL, "runs", "--nats", "nats://127.0.0.1:1"], capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert lines[-1].startswith("simreel: cannot reach NATS at nats://127.0.0.1:1"), proc.stderr
