"""The `simreel` command as a user runs it: embedded stack, --json contract, up/submit/runs, Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

pytestmark = pytest.mark.integration

SIMREEL = [sys.executable, "-m", "simreel.cli"]


def _children(pid: int) -> set[int]:
    """Every live descendant of pid (from /proc), to prove nothing is left behind."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(p)
    return alive


def test_run_json_on_the_embedded_stack(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMREEL_")}
    proc = subprocess.run(
        [*SIMREEL, "run", "pendulum", "--episodes", "2", "--duration", "0.5", "--fps", "10", "--width", "96",
         "--height", "64", "--quality", "fast", "--policy", "sine", "--out", str(tmp_path / "out"), "--json"],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout  # exactly one JSON object on stdout; logs went to stderr
    out = json.loads(lines[0])
    assert out["status"] == "completed" and out["run_id"]
    videos = [a for a in out["artifacts"] if a["kind"] == "video"]
    assert [a["episode"] for a in videos] == [0, 1]
    for a in out["artifacts"]:
        assert set(a) >= {"kind", "format", "episode", "url", "path", "bytes", "sha256"}
        assert Path(a["path"]).is_file() and Path(a["path"]).stat().st_size == a["bytes"]
        assert str(tmp_path / "out") in a["path"]
    with av.open(videos[0]["path"]) as c:
        assert sum(1 for _ in c.decode(video=0)) == 5


def test_run_exit_code_is_nonzero_when_the_run_fails(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMREEL_")}
    proc = subprocess.run([*SIMREEL, "run", "no-such-scene", "--duration", "0.2", "--out", str(tmp_path / "o"),
                           "--json"], capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["status"] == "failed" and out["error"]["code"] == "scene_invalid"
    assert "cartpole" in out["error"]["message"]  # the message lists what would have worked


def test_up_submit_runs_then_ctrl_c_leaves_no_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMREEL_")}
    from simreel.stack.embedded import free_port

    ui_port = free_port()
    up = subprocess.Popen([*SIMREEL, "up", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                           "--ui-port", str(ui_port)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        url = up.stdout.readline().strip()
        assert url.startswith("nats://127.0.0.1:"), up.stderr.read() if up.poll() is not None else url
        spawned = _children(up.pid)
        assert len(spawned) >= 6  # nats-server + 4 services + ui
        sub = subprocess.run([*SIMREEL, "submit", "cartpole", "--nats", url, "--duration", "0.5", "--fps", "10",
                              "--width", "96", "--height", "64", "--quality", "fast", "--run-id", "cli-up-1",
                              "--wait", "--json"], capture_output=True, text=True, timeout=180, env=env)
        assert sub.returncode == 0, sub.stderr[-3000:]
        assert json.loads(sub.stdout)["status"] == "completed"
        runs = subprocess.run([*SIMREEL, "runs", "--nats", url, "--json"], capture_output=True, text=True,
                              timeout=60, env=env)
        assert runs.returncode == 0, runs.stderr
        listed = {r["run_id"]: r for r in json.loads(runs.stdout)}
        assert listed["cli-up-1"]["status"] == "completed"
        # The ui came up with the stack and lists the same run (it may still be replaying the log).
        from tests.support.ui import UiClient, wait_http

        wait_http(f"http://127.0.0.1:{ui_port}/api/runs", up)
        ui = UiClient(f"http://127.0.0.1:{ui_port}")
        for kind, data in ui.sse():
            if kind == "hello" and ui.json("GET", "/api/runs")[1]["total"]:
                break
            if kind == "run" and data["run_id"] == "cli-up-1":
                break
        assert ui.json("GET", "/api/runs/cli-up-1")[1]["summary"]["status"] == "completed"
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # Say where it stuck: its own output and each service's log.
            up.kill()
            _, err = up.communicate(timeout=10)
            logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                             for p in sorted((tmp_path / "data" / "logs").glob("*.log")))
            pytest.fail(f"`simreel up` did not exit within 60 s of Ctrl-C\nits stderr:\n{err[-3000:]}\n{logs}")
    deadline = time.monotonic() + 30
    while _alive(spawned) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(spawned), "processes left behind after Ctrl-C"
