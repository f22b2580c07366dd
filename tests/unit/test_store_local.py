"""LocalStore against a real temp directory."""
import hashlib
import os
import threading
from pathlib import Path

import pytest

from simreel.store import ArtifactStore, LocalStore, Stored, StoreError, make_key


def _write(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


async def test_put_copies_with_same_sha256(store, tmp_path):
    src = tmp_path / "v.mp4"
    digest = _write(src, 3 * 1024 * 1024 + 17)  # several copy chunks
    key = make_key("simreel", "sess", "run1", 0, "video.mp4")
    st = await store.put(key, src, content_type="video/mp4", metadata={"run_id": "run1"})
    assert isinstance(st, Stored)
    dest = Path(st.path)
    assert dest == store.root / "simreel/sess/run1/0000/video.mp4"
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest == st.sha256
    assert st.bytes == src.stat().st_size
    assert st.url == dest.as_uri() and st.url.startswith("file://")
    assert st.bucket == "" and st.expires_at is None and st.content_type == "video/mp4"
    assert src.exists(), "put copies, it must not consume the staged file"
    assert await store.exists(key)
    # no temp files left beside it
    assert [p.name for p in dest.parent.iterdir()] == ["video.mp4"]


async def test_put_overwrites_atomically(store, tmp_path):
    key = "p/s/r/all/a.gif"
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, 1000)
    digest_b = _write(b, 2000)
    await store.put(key, a, content_type="image/gif", metadata={})
    st = await store.put(key, b, content_type="image/gif", metadata={})
    assert st.sha256 == digest_b and st.bytes == 2000
    assert hashlib.sha256(Path(st.path).read_bytes()).hexdigest() == digest_b


async def test_put_runs_off_the_event_loop(store, tmp_path):
    seen = []
    real = os.replace

    def spy(*args):
        seen.append(threading.current_thread() is threading.main_thread())
        return real(*args)

    src = tmp_path / "x"
    _write(src, 10)
    os.replace = spy
    try:
        await store.put("p/s/r/all/x", src, content_type="application/octet-stream", metadata={})
    finally:
        os.replace = real
    assert seen == [False]


async def test_wrong_expected_sha256_is_refused_and_keeps_old(store, tmp_path):
    key = "p/s/r/0001/v.mp4"
    good, bad = tmp_path / "good", tmp_path / "bad"
    digest = _write(good, 100)
    _write(bad, 100)
    await store.put(key, good, content_type="video/mp4", metadata={"sha256": digest})
    with pytest.raises(StoreError, match="refusing"):
        await store.put(key, bad, content_type="video/mp4", metadata={"sha256": digest})
    dest = store.root / key
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest
    assert [p.name for p in dest.parent.iterdir()] == ["v.mp4"]


async def test_missing_source_is_a_store_error_and_file_not_found(store, tmp_path):
    # The uploader treats "staged file already gone" (a redelivery) with `except FileNotFoundError`.
    with pytest.raises(StoreError, match="does not exist") as err:
        await store.put("p/s/r/all/x", tmp_path / "nope", content_type="x/y", metadata={})
    assert isinstance(err.value, FileNotFoundError)
    assert not (store.root / "p").exists()


async def test_delete_is_idempotent_and_prunes_dirs(store, tmp_path):
    src = tmp_path / "v"
    _write(src, 10)
    key = make_key("simreel", "sess", "run1", 2, "v.mp4")
    other = make_key("simreel", "sess", "run2", 0, "v.mp4")
    await store.put(key, src, content_type="video/mp4", metadata={})
    await store.put(other, src, content_type="video/mp4", metadata={})
    assert await store.delete(key) is True
    assert not await store.exists(key)
    assert await store.delete(key) is False
    assert await store.delete("never/was/here") is False
    assert not (store.root / "simreel/sess/run1").exists()  # emptied run folder pruned
    assert (store.root / other).is_file()  # siblings untouched
    assert store.root.is_dir()


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "", "a//b"])
async def test_hostile_keys_are_refused(store, tmp_path, bad):
    src = tmp_path / "v"
    _write(src, 1)
    with pytest.raises(ValueError):
        await store.put(bad, src, content_type="x/y", metadata={})
    with pytest.raises(ValueError):
        await store.delete(bad)
    assert not (tmp_path / "x").exists()


def test_base_url(tmp_path):
    store = LocalStore(tmp_path, base_url="http://files.local/art")
    assert store.url("p/s/r/all/v.mp4") == "http://files.local/art/p/s/r/all/v.mp4"


async def test_is_an_artifact_store(store):
    assert isinstance(store, ArtifactStore)
    await store.close()
