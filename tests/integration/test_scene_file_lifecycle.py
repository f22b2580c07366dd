"""A stored run stays reproducible after the user's files are gone, and retention removes scene files
only once no existing run references them (after a grace period), announcing each removal."""
from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.client import Client
from simreel.runtime.config import NatsSettings
from simreel.transport.scenefiles import SceneFileStore

from tests.support.scenes import SCENE, stl
from tests.support.stacks import running_stack

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "simreel.cli"]


@pytest.fixture(scope="module")
def gc_stack(tmp_path_factory):
    """A stack whose retention sweeps every half second and deletes scene files unreferenced for 3 s
    (a client's upload is named in its request within milliseconds)."""
    with running_stack(tmp_path_factory.mktemp("gc"), SIMREEL_RETENTION_SWEEP_S="0.5",
                       SIMREEL_SCENE_FILE_GRACE_S="3") as s:
        yield s


def _cli(*args: str, cwd=None) -> dict:
    proc = subprocess.run([*CLI, *args, "--json"], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert proc.stdout.strip(), proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _video_sha(result: dict) -> str:
    (video,) = [a for a in result["artifacts"] if a["kind"] == "video"]
    return video["sha256"]


async def _deleted_digests(url: str, want: set[str], timeout: float = 60.0) -> set[str]:
    """SceneFileDeleted digests seen, until every one of `want` is among them."""
    seen: set[str] = set()
    async with await Client.connect(NatsSettings(url=url)) as client:
        async def follow() -> None:
            async for e in client.bus.follow(subjects.all_of(ev.SceneFileDeleted)):
                if isinstance(e, ev.SceneFileDeleted):
                    seen.add(e.sha256)
                    if want <= seen:
                        return
        await asyncio.wait_for(follow(), timeout)
    return seen


async def _stored(url: str) -> dict[str, int]:
    async with await Client.connect(NatsSettings(url=url)) as client:
        return await SceneFileStore(client.bus).list()


def test_run_again_reproduces_a_run_after_its_files_are_gone(gc_stack, tmp_path):
    robot = tmp_path / "robot"
    (robot / "bot").mkdir(parents=True)
    (robot / "meshes").mkdir()
    (robot / "bot" / "bot.xml").write_bytes(SCENE.replace(b"tetra-bot", b"again-bot"))
    (robot / "meshes" / "tet.stl").write_bytes(stl(6.0))
    first = _cli("run", str(robot / "bot" / "bot.xml"), "--nats", gc_stack.url, "--duration", "1", "--policy",
                 "random", "--seed", "7", "--width", "96", "--height", "64", "--fps", "10", "--quality", "fast",
                 "--out", str(tmp_path / "out"))
    assert first["status"] == "completed", first
    shutil.rmtree(robot)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = _cli("run", "--again", first["run_id"], "--nats", gc_stack.url, "--out", str(tmp_path / "out"),
                 cwd=elsewhere)
    assert again["status"] == "completed", again
    assert again["run_id"] != first["run_id"]
    assert _video_sha(again) == _video_sha(first)  # byte-identical


def test_unreferenced_files_go_and_referenced_ones_stay(gc_stack, tmp_path):
    mesh = stl(7.0)
    scene = SCENE.replace(b"tetra-bot", b"kept-bot")
    robot = tmp_path / "robot"
    (robot / "bot").mkdir(parents=True)
    (robot / "meshes").mkdir()
    (robot / "bot" / "bot.xml").write_bytes(scene)
    (robot / "meshes" / "tet.stl").write_bytes(mesh)
    run = _cli("run", str(robot / "bot" / "bot.xml"), "--nats", gc_stack.url, "--duration", "0.5",
               "--width", "96", "--height", "64", "--fps", "10", "--quality", "fast", "--out", str(tmp_path / "out"))
    assert run["status"] == "completed", run
    orphan = b"uploaded, never named in a request"
    orphan_digest = hashlib.sha256(orphan).hexdigest()

    (tmp_path / "orphan").write_bytes(orphan)

    async def upload_orphan() -> None:
        async with await Client.connect(NatsSettings(url=gc_stack.url)) as client:
            await SceneFileStore(client.bus).upload(
                {"orphan": tmp_path / "orphan"}, {"orphan": ev.SceneFile(sha256=orphan_digest, size=len(orphan))})

    asyncio.run(upload_orphan())
    kept = {hashlib.sha256(scene).hexdigest(), hashlib.sha256(mesh).hexdigest()}
    deleted = asyncio.run(_deleted_digests(gc_stack.url, {orphan_digest}))
    assert orphan_digest in deleted and not (kept & deleted)
    stored = asyncio.run(_stored(gc_stack.url))
    assert kept <= set(stored) and orphan_digest not in stored

    # once the run is deleted, nothing references its files any more
    rm = subprocess.run([*CLI, "rm", run["run_id"], "--nats", gc_stack.url], capture_output=True, text=True,
                        timeout=120)
    assert rm.returncode == 0, rm.stderr
    asyncio.run(_deleted_digests(gc_stack.url, kept))
    assert not (kept & set(asyncio.run(_stored(gc_stack.url))))
