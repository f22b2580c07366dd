"""The simulator's scene-file cache: bounded in bytes (least recently used go first, never a file a run
is using), and every read checked against the digest (a rotted copy is fetched again)."""
from __future__ import annotations

import hashlib
import os

import pytest

from simreel.contract import events as ev
from simreel.transport.bus import Bus
from simreel.runtime.config import NatsSettings
from simreel.transport.scenefiles import SceneFileStore
from simreel.services.simulator.scene_cache import SceneCache

pytestmark = pytest.mark.integration


async def _stored(store: SceneFileStore, tmp_path, *blobs: bytes) -> list[dict[str, ev.SceneFile]]:
    out = []
    for i, data in enumerate(blobs):
        (tmp_path / f"b{i}").write_bytes(data)
        manifest = {f"f{i}.bin": ev.SceneFile(sha256=hashlib.sha256(data).hexdigest(), size=len(data))}
        await store.upload({f"f{i}.bin": tmp_path / f"b{i}"}, manifest)
        out.append(manifest)
    return out


async def test_the_cache_stays_within_its_bytes_and_rechecks_what_it_reads(nats_server, tmp_path):
    bus = await Bus.connect(NatsSettings(url=nats_server.url))
    try:
        store = SceneFileStore(bus)
        a, b, c = await _stored(store, tmp_path, os.urandom(10_000), os.urandom(10_000), os.urandom(10_000))
        cache = SceneCache(store, tmp_path / "cache", max_bytes=25_000)
        async with cache.files(a) as local_a:
            path_a = local_a["f0.bin"]
            async with cache.files(b):
                pass
            async with cache.files(c):  # over the bound: b goes (a is in use)
                pass
            assert path_a.exists()
        cached = {p.name for p in (tmp_path / "cache").glob("??/*")}
        assert a["f0.bin"].sha256 in cached and c["f2.bin"].sha256 in cached and b["f1.bin"].sha256 not in cached
        assert (cache.stats.misses, cache.stats.hits, cache.stats.evicted) == (3, 0, 1)
        path_a.write_bytes(b"rotted" + path_a.read_bytes()[6:])  # same size, other bytes
        async with cache.files(a) as again:
            assert hashlib.sha256(again["f0.bin"].read_bytes()).hexdigest() == a["f0.bin"].sha256
        assert cache.stats.misses == 4  # fetched again, not served rotted
    finally:
        await bus.close()
