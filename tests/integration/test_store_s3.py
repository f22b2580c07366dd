"""S3Store against a real S3 server (SeaweedFS `weed server -s3`, one per module).

The outage test stops that shared server, so it runs last and always leaves it running.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
import tracemalloc
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from simreel.contract import events as ev
from simreel.readmodels.artifact_index import ArtifactIndex
from simreel.store import S3Store, StoreError, make_key, store_from_env
from tests.support.waits import until
from tests.support.s3server import S3Server
from tests.support.uploads import deliver, staged_video

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MiB = 1024 * 1024
PUBLIC_BUCKET = "public-art"


@pytest.fixture(scope="module")
def s3():
    with S3Server(public_read_buckets=(PUBLIC_BUCKET,)) as server:
        print(f"weed ready in {server.startup_s:.2f}s")
        yield server


def _store(s3: S3Server, bucket: str, **kw) -> S3Store:
    return S3Store(s3.endpoint, s3.access_key, s3.secret_key, bucket, **kw)


def _write(path: Path, size: int) -> str:
    """Random content (incompressible, no accidental dedupe), written in chunks."""
    sha = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 * MiB))
            sha.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return sha.hexdigest()


def _fetch_sha256(url: str) -> tuple[int, str]:
    sha, n = hashlib.sha256(), 0
    with urllib.request.urlopen(url, timeout=30) as resp:
        while chunk := resp.read(MiB):
            sha.update(chunk)
            n += len(chunk)
    return n, sha.hexdigest()


def _key(name: str, episode: int | None = 0) -> str:
    return make_key("simreel", "itest", f"run-{secrets.token_hex(4)}", episode, name)


async def test_put_then_presigned_get(s3, tmp_path):
    store = _store(s3, "art-presign")
    src = tmp_path / "v.mp4"
    digest = _write(src, 300_000)
    key = _key("video.mp4", 7)
    before = time.time()
    st = await store.put(key, src, content_type="video/mp4",
                         metadata={"run_id": "r1", "episode": "7"})
    assert (st.key, st.bytes, st.sha256, st.bucket) == (key, 300_000, digest, "art-presign")
    assert st.content_type == "video/mp4" and st.path is None
    assert before + 7 * 24 * 3600 - 5 <= st.expires_at <= time.time() + 7 * 24 * 3600
    assert "X-Amz-Signature=" in st.url

    assert await asyncio.to_thread(_fetch_sha256, st.url) == (300_000, digest)

    stat = s3.client().stat_object("art-presign", key)
    assert stat.content_type == "video/mp4"
    assert stat.metadata["x-amz-meta-sha256"] == digest
    assert stat.metadata["x-amz-meta-run_id"] == "r1"
    assert stat.metadata["x-amz-meta-episode"] == "7"

    # The signature is what grants access: the same object without it is refused.
    with pytest.raises(urllib.error.HTTPError) as err:
        await asyncio.to_thread(_fetch_sha256, f"{s3.url}/art-presign/{key}")
    assert err.value.code == 403
    assert await store.exists(key)
    assert not await store.exists(key + ".nope")
    await store.close()


async def test_public_url_mode(s3, tmp_path):
    store = _store(s3, PUBLIC_BUCKET, public_base_url=f"{s3.url}/{PUBLIC_BUCKET}")
    src = tmp_path / "a.gif"
    digest = _write(src, 50_000)
    key = _key("anim.gif", None)
    st = await store.put(key, src, content_type="image/gif", metadata={})
    assert st.url == f"{s3.url}/{PUBLIC_BUCKET}/{key}" == store.url(key)
    assert st.expires_at is None
    assert await asyncio.to_thread(_fetch_sha256, st.url) == (50_000, digest)


async def test_bucket_created_if_missing_race_safe(s3, tmp_path):
    bucket = f"fresh-{secrets.token_hex(4)}"
    client = s3.client()
    assert not client.bucket_exists(bucket)
    src = tmp_path / "x.bin"
    _write(src, 1000)
    stores = [_store(s3, bucket) for _ in range(3)]  # three uploaders racing to create it
    keys = [_key(f"x{i}.bin") for i in range(3)]
    results = await asyncio.gather(*(
        st.put(k, src, content_type="application/octet-stream", metadata={})
        for st, k in zip(stores, keys, strict=True)
    ))
    assert client.bucket_exists(bucket)
    assert sorted(o.object_name for o in client.list_objects(bucket, recursive=True)) == sorted(keys)
    assert {r.bucket for r in results} == {bucket}


async def test_large_artifact_goes_multipart_in_bounded_memory(s3, tmp_path):
    size = 65 * MiB + 123
    part = 5 * MiB
    src = tmp_path / "big.mp4"
    digest = _write(src, size)
    store = _store(s3, "art-big", part_size=part)
    key = _key("big.mp4")
    tracemalloc.start()
    try:
        st = await store.put(key, src, content_type="video/mp4", metadata={})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert st.bytes == size and st.sha256 == digest
    print(f"traced peak {peak / MiB:.1f} MiB")
    assert peak < 8 * part, f"peak {peak / MiB:.1f} MiB for a {size / MiB:.0f} MiB file"

    stat = s3.client().stat_object("art-big", key)
    parts = -(-size // part)
    assert stat.size == size
    assert stat.etag.strip('"').endswith(f"-{parts}"), stat.etag  # multipart ETag: md5-of-md5s-N
    assert await asyncio.to_thread(_fetch_sha256, st.url) == (size, digest)


async def test_wrong_sha256_from_caller_is_refused(s3, tmp_path):
    store = _store(s3, "art-verify")
    src = tmp_path / "v.mp4"
    _write(src, 1000)
    key = _key("v.mp4")
    with pytest.raises(StoreError, match="expected"):
        await store.put(key, src, content_type="video/mp4", metadata={"sha256": "0" * 64})
    assert not await store.exists(key)


async def test_delete_is_idempotent(s3, tmp_path):
    store = store_from_env(s3.env("art-delete"))
    src = tmp_path / "v.mp4"
    _write(src, 1000)
    key = _key("v.mp4")
    await store.put(key, src, content_type="video/mp4", metadata={})
    assert await store.delete(key) is True
    assert not await store.exists(key)
    assert await store.delete(key) is False
    assert await _store(s3, f"never-{secrets.token_hex(4)}").delete(key) is False


async def test_stat_is_what_put_stored(s3, tmp_path):
    store = _store(s3, "art-stat")
    src = tmp_path / "v.mp4"
    digest = _write(src, 4321)
    key = _key("v.mp4")
    assert await store.stat(key) is None
    put = await store.put(key, src, content_type="video/mp4", metadata={})
    st = await store.stat(key)
    assert (st.key, st.bytes, st.sha256, st.content_type, st.bucket) == (key, 4321, digest, "video/mp4", "art-stat")
    assert await asyncio.to_thread(_fetch_sha256, st.url) == (put.bytes, put.sha256)


async def test_redelivered_video_is_announced_as_stored_in_s3(s3, tmp_path):
    """The uploader's redelivery path on a real S3 store: the second ArtifactStored carries the
    object's size and digest as the server has them, not 0 (retention sums these sizes)."""
    store = _store(s3, "art-redelivered")
    staging, video = await staged_video(tmp_path)
    first = await deliver(store, staging, video, attempt=1)
    again = await deliver(store, staging, video, attempt=2)
    assert [type(e) for e in first] == [type(e) for e in again] == [ev.ArtifactStored]
    (a,), (b,) = first, again
    assert (a.bytes, a.sha256) == (b.bytes, b.sha256) == (video.bytes, video.sha256)
    assert (b.key, b.bucket, b.content_type) == (a.key, a.bucket, "video/mp4")
    assert await asyncio.to_thread(_fetch_sha256, b.url) == (video.bytes, video.sha256)
    assert [e.bytes for e in ArtifactIndex().apply_all(first + again).entries.values()] == [video.bytes]


async def test_s3_down_when_upload_starts_then_back(s3, tmp_path):
    """Server down at the first byte (bucket not even created yet), back after the upload has failed
    and backed off twice: it retries and the object is stored exactly once, intact."""
    bucket = "art-outage"
    src = tmp_path / "v.mp4"
    size = 12 * MiB + 5  # multipart: a part boundary to get right after the retry
    digest = _write(src, size)
    store = _store(s3, bucket, part_size=5 * MiB, backoff_s=0.5, retries=6)
    key = _key("v.mp4")
    try:
        await s3.astop()
        task = asyncio.create_task(
            store.put(key, src, content_type="video/mp4", metadata={"run_id": "outage"})
        )
        await until(lambda: task.done() or store.retried >= 2, timeout=60, what="two failed upload attempts")
        assert not task.done(), "put gave up (or succeeded) while the server was down"
        t_back = time.monotonic()
        await s3.astart()
        st = await asyncio.wait_for(task, timeout=60)
        print(f"stored {time.monotonic() - t_back:.1f}s after restart began")
    finally:
        if not s3.running:
            s3.start()
    assert (st.bytes, st.sha256) == (size, digest)
    objects = list(s3.client().list_objects(bucket, prefix=key.rsplit("/", 1)[0], recursive=True))
    assert [o.object_name for o in objects] == [key]
    assert await asyncio.to_thread(_fetch_sha256, st.url) == (size, digest)
