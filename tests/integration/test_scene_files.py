"""Scene files travel by content: uploaded once to the bus's object store, named in the request by path
and digest, fetched and checked by the simulator. A system with nothing but nats-py does the same."""
from __future__ import annotations

import hashlib
import json
import os

import nats
import nats.js.errors
import pytest

from simreel.contract import events as ev
from simreel.client import Client
from simreel.runtime.config import NatsSettings
from simreel.transport.scenefiles import SceneFileStore
from simreel.sim.package import pack

from tests.support.runs import events_stream_exists, run_request
from tests.support.scenes import SCENE, stl

pytestmark = pytest.mark.integration

RENDER = {"width": 96, "height": 64, "fps": 10, "quality": "fast"}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _object_store(js, timeout: float = 60.0):
    """The scene-file bucket; a plain client creates it if no simreel client has yet."""
    try:
        return await js.object_store("simreel-scene-files")
    except nats.js.errors.NotFoundError:
        try:
            return await js.create_object_store("simreel-scene-files")
        except nats.js.errors.BadRequestError:
            return await js.object_store("simreel-scene-files")


async def _plain_run(url: str, run_id: str, files: dict[str, bytes], upload: dict[str, bytes], scene: str):
    """Upload `upload` (digest name -> bytes) with nats-py's object store, publish the JSON request,
    return the run's SimCompleted or SimFailed as JSON."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await events_stream_exists(js)
        obs = await _object_store(js)
        for name, data in upload.items():
            await obs.put(name, data)
        sub = await nc.subscribe(f"simreel.evt.sim.*.{run_id}")
        request = {"type": "SimRequested", "run_id": run_id, "scene": scene, "duration_s": 0.5, "render": RENDER,
                   "files": {path: {"sha256": _digest(data), "size": len(data)} for path, data in files.items()}}
        await js.publish("simreel.evt.sim.requested", json.dumps(request).encode())
        while True:
            event = json.loads((await sub.next_msg(timeout=120)).data)
            if event["type"] in ("SimCompleted", "SimFailed"):
                return event
    finally:
        await nc.close()


async def test_a_plain_nats_client_uploads_files_and_names_them(stack):
    files = {"robot/bot.xml": SCENE, "meshes/tet.stl": stl()}
    event = await _plain_run(stack.url, "plain-files", files, {_digest(d): d for d in files.values()}, "robot/bot.xml")
    assert event["type"] == "SimCompleted", event


async def test_a_missing_file_fails_the_run_naming_it(stack):
    files = {"robot/bot.xml": SCENE, "meshes/tet.stl": stl(2.0)}
    event = await _plain_run(stack.url, "plain-missing", files, {_digest(SCENE): SCENE}, "robot/bot.xml")
    assert event["type"] == "SimFailed" and event["code"] == "scene_invalid", event
    assert "meshes/tet.stl" in event["message"] and "not in the scene-file store" in event["message"]


async def test_a_corrupt_object_fails_the_run_naming_it(stack):
    good, bad = stl(3.0), stl(4.0)
    files = {"robot/bot.xml": SCENE, "meshes/tet.stl": good}
    # bytes under a name that is not their digest: the simulator hashes what it fetched
    event = await _plain_run(stack.url, "plain-corrupt", files, {_digest(SCENE): SCENE, _digest(good): bad},
                             "robot/bot.xml")
    assert event["type"] == "SimFailed" and event["code"] == "scene_invalid", event
    assert "meshes/tet.stl" in event["message"] and "not to their name" in event["message"]


async def test_a_second_run_of_the_same_robot_uploads_nothing(stack, tmp_path):
    (tmp_path / "robot").mkdir()
    (tmp_path / "meshes").mkdir()
    (tmp_path / "robot" / "bot.xml").write_bytes(SCENE.replace(b"tetra-bot", b"second-bot"))
    (tmp_path / "meshes" / "tet.stl").write_bytes(stl(5.0))
    package = pack(tmp_path / "robot" / "bot.xml", max_file_bytes=1 << 20, max_scene_bytes=1 << 20)
    async with await Client.connect(NatsSettings(url=stack.url)) as client:
        first = await client.upload_scene(package)
        second = await client.upload_scene(package)
    assert (first.uploaded_files, first.uploaded_bytes) == (2, package.total_bytes)
    assert (second.uploaded_files, second.uploaded_bytes, second.present_files) == (0, 0, 2)
    req = ev.SimRequested(scene=package.entry, files=package.files, duration_s=0.5, render=ev.RenderSpec(**RENDER))
    result, seen = await run_request(stack.url, req)
    assert result.status == "completed", result.error
    started = next(e for e in seen if isinstance(e, ev.SimStarted))
    assert started.scene == "bot.xml"  # runs of a file keep its name


async def test_no_message_exceeds_max_payload_for_a_scene_far_over_it(stack, tmp_path):
    """A 3 MiB mesh (three times the server's max_payload) records; every message stayed under the cap
    (the server would have refused it otherwise)."""
    mesh = stl(extra_triangles=3 * 1024 * 1024 // 50)
    (tmp_path / "robot").mkdir()
    (tmp_path / "meshes").mkdir()
    (tmp_path / "robot" / "bot.xml").write_bytes(SCENE)
    (tmp_path / "meshes" / "tet.stl").write_bytes(mesh)
    package = pack(tmp_path / "robot" / "bot.xml", max_file_bytes=1 << 30, max_scene_bytes=1 << 30)
    assert package.total_bytes > 3 * 1024 * 1024
    async with await Client.connect(NatsSettings(url=stack.url)) as client:
        assert package.total_bytes > client.bus.max_payload
        req = ev.SimRequested(scene="x", duration_s=0.5, render=ev.RenderSpec(**RENDER))
        result = await client.run(req, scene=package, timeout=120)
        assert result.status == "completed", result.error
        assert await SceneFileStore(client.bus).has(package.files["meshes/tet.stl"].sha256, len(mesh))
    assert os.path.exists(tmp_path / "meshes" / "tet.stl")


async def test_a_store_that_cannot_take_the_files_is_one_clear_error(nats_server, tmp_path):
    """A scene-file store at its size limit: the client says which file and why, before any request."""
    from nats.js.api import ObjectStoreConfig

    from simreel.transport.scenefiles import SceneFileError

    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().create_object_store("simreel-scene-files", config=ObjectStoreConfig(max_bytes=4096))
    finally:
        await nc.close()
    (tmp_path / "robot").mkdir()
    (tmp_path / "meshes").mkdir()
    (tmp_path / "robot" / "bot.xml").write_bytes(SCENE)
    (tmp_path / "meshes" / "tet.stl").write_bytes(stl() * 60)
    package = pack(tmp_path / "robot" / "bot.xml", max_file_bytes=1 << 20, max_scene_bytes=1 << 20)
    async with await Client.connect(NatsSettings(url=nats_server.url)) as client:
        with pytest.raises(SceneFileError, match=r"cannot store scene file 'meshes/tet\.stl'"):
            await client.upload_scene(package)
