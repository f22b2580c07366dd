"""A video redelivered to the uploader after its staged file was removed (the ack was lost; past
JetStream's 2-minute duplicate window the second ArtifactStored is kept as a new fact) is announced
with the size and digest of the stored object: retention sums those sizes for max-bytes policies."""
from __future__ import annotations

from simreel.contract import events as ev
from simreel.readmodels.artifact_index import ArtifactIndex
from simreel.store import LocalStore
from tests.support.uploads import deliver, staged_video


async def test_redelivered_video_is_announced_as_stored(tmp_path):
    store = LocalStore(tmp_path / "out")
    staging, video = await staged_video(tmp_path)
    first = await deliver(store, staging, video, attempt=1)
    again = await deliver(store, staging, video, attempt=2)
    assert [type(e) for e in first] == [type(e) for e in again] == [ev.ArtifactStored]
    (a,), (b,) = first, again
    assert (a.bytes, a.sha256) == (video.bytes, video.sha256)
    assert (b.key, b.bytes, b.sha256, b.path, b.url, b.content_type) == (a.key, a.bytes, a.sha256, a.path, a.url,
                                                                          a.content_type)
    index = ArtifactIndex().apply_all(first + again)
    assert [e.bytes for e in index.entries.values()] == [video.bytes]


async def test_redelivered_video_gone_from_store_fails_clearly(tmp_path):
    store = LocalStore(tmp_path / "out")
    staging, video = await staged_video(tmp_path)
    (stored,) = await deliver(store, staging, video, attempt=1)
    await store.delete(stored.key)
    (failed,) = await deliver(store, staging, video, attempt=2)
    assert isinstance(failed, ev.StoreFailed) and failed.key == stored.key
    assert "never stored" in failed.message
