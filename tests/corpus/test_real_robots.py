"""Every MJCF file of real robot packages that MuJoCo itself loads records through `simreel run`.

The files are the packages' own, unpacked as published (meshes in sibling folders, nested includes,
skins, textures, cube maps). Each is loaded with `mujoco.MjModel.from_xml_path` first; those MuJoCo
refuses (include fragments, files that need other packages' assets) are listed and left out. Each of
the others is run with the CLI against one stack, and its video must not be blank. A file with no
geometry at all (an asset or material fragment) still records; its video is blank by nature, and
listed so.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import mujoco
import numpy as np
import pytest

from simreel.stack.embedded import Stack
from tests.support import corpus

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "simreel.cli"]


@pytest.fixture(scope="module")
def robot_stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    env = dict(os.environ, SIMREEL_CONCURRENCY="2", SIMREEL_LOG_LEVEL="warning")
    s = Stack(data_dir=base / "data", out_dir=base / "out", env=env)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _loads(path: Path) -> tuple[bool, int, str]:
    try:
        m = mujoco.MjModel.from_xml_path(str(path))
    except Exception as e:  # noqa: BLE001 - MuJoCo's own verdict, recorded as such
        return False, 0, str(e).strip().splitlines()[0][:120]
    return True, m.ngeom, ""


def _record(url: str, path: Path, out: Path) -> dict:
    proc = subprocess.run([*CLI, "run", str(path), "--nats", url, "--duration", "1", "--policy", "random",
                           "--width", "96", "--height", "72", "--fps", "10", "--quality", "fast", "--json",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and not proc.stdout.strip():
        return {"status": "error", "error": {"message": proc.stderr.strip()[-500:]}}
    result = json.loads(proc.stdout)
    videos = [a for a in result["artifacts"] if a["kind"] == "video"]
    if videos:
        result["drawn"] = _drawn(Path(videos[0]["path"]))
    return result


def _drawn(video: Path) -> bool:
    """Whether any frame shows something: a blank video is one uniform fill, however bright or dark
    (H.264 keeps a uniform fill within a level or two; a dim robot without lights spans more than 10)."""
    with av.open(str(video)) as c:
        return any(int(np.ptp(f.to_ndarray(format="gray"))) > 6 for f in c.decode(video=0))


def test_every_scene_mujoco_loads_records_a_video(robot_stack, tmp_path):
    files = corpus.scene_files()
    by_package = {name for name, _ in corpus.PACKAGES}
    assert len(by_package) >= 4 and len(files) > 100
    verdicts = {p: _loads(p) for p in files}
    loadable = [p for p, (ok, _, _) in verdicts.items() if ok]
    assert len(loadable) >= 90  # the corpus's own size: a fetch that lost files would show here
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(loadable, pool.map(lambda p: _record(robot_stack.url, p, tmp_path / "out"), loadable)))
    root = corpus.cache_dir()
    failures = []
    lines = []
    for p in files:
        ok, ngeom, why = verdicts[p]
        name = p.relative_to(root)
        if not ok:
            lines.append(f"  not loaded by MuJoCo   {name}: {why}")
            continue
        r = results[p]
        if r["status"] != "completed":
            failures.append(f"{name}: {r['status']}: {r.get('error', {}).get('message')}")
            lines.append(f"  FAILED                 {name}")
        elif ngeom == 0:
            lines.append(f"  recorded (no geometry) {name} (anything drawn: {r.get('drawn')})")
        elif not r.get("drawn"):
            failures.append(f"{name}: the video is blank")
            lines.append(f"  BLANK                  {name}")
        else:
            lines.append(f"  recorded               {name}")
    sys.stderr.write("real-robot corpus:\n" + "\n".join(lines) + "\n")
    assert not failures, "\n".join(failures)
