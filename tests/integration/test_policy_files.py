"""`simreel run SCENE --policy ./my_policy.py:act`: the person who typed it started the embedded stack,
so that stack runs the policy; a shared stack keeps its allow-list."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "simreel.cli"]
POLICY = '''
import numpy as np

LOADS = []  # a checkpoint would be loaded here, once per process


def act(model, *, seed, params):
    LOADS.append(seed)
    gain = params.get("gain", 0.75)

    def policy(model, data, t):
        return np.full(model.nu, gain)

    return policy
'''


def _run(*args: str, env=None) -> tuple[int, dict | None, str]:
    proc = subprocess.run([*CLI, "run", *args, "--json"], capture_output=True, text=True, timeout=300,
                          env=env or dict(os.environ))
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else None), proc.stderr


def _actions(result: dict) -> list[list[float]]:
    (tele,) = [a for a in result["artifacts"] if a["kind"] == "telemetry"]
    rows = [json.loads(line) for line in open(tele["path"])]
    return [r["action"] for r in rows if "action" in r]


def test_a_policy_file_runs_on_the_stack_simreel_run_starts(tmp_path):
    (tmp_path / "my_policy.py").write_text(POLICY)
    env = {k: v for k, v in os.environ.items() if k != "SIMREEL_NATS_URL"}
    code, result, err = _run("pendulum", "--policy", f"{tmp_path / 'my_policy.py'}:act", "--duration", "0.5",
                             "--width", "64", "--height", "48", "--fps", "10", "--quality", "fast",
                             "--out", str(tmp_path / "out"), env=env)
    assert code == 0 and result["status"] == "completed", (result, err[-2000:])
    actions = _actions(result)
    assert len(actions) > 1 and all(a == [0.75] for a in actions[1:])  # frame 0 is before the first step


def test_a_shared_stack_keeps_its_allow_list(stack, tmp_path):
    (tmp_path / "my_policy.py").write_text(POLICY)
    code, result, _ = _run("pendulum", "--nats", stack.url, "--policy", f"{tmp_path / 'my_policy.py'}:act",
                           "--duration", "0.5", "--width", "64", "--height", "48", "--fps", "10", "--out",
                           str(tmp_path / "out"))
    assert code == 1 and result["status"] == "failed"
    assert "allow-list" in result["error"]["message"] and "my_policy.py" in result["error"]["message"]
