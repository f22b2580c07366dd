"""The uploader's handler driven directly against a real artifact store: what it announces when a
video is delivered, and again when the same message comes back after its staged file is gone."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from simreel.contract import events as ev
from simreel.services.uploader.handlers import Uploader
from simreel.transport.staging import DirStaging
from simreel.store.base import ArtifactStore
from tests.support.handlers import Given, MemoryBus


async def staged_video(tmp_path: Path, size: int = 70_001) -> tuple[DirStaging, ev.VideoAvailable]:
    """A VideoAvailable whose staged file holds `size` random bytes."""
    staging = DirStaging(tmp_path / "staging")
    work = staging.tempdir() / "episode-0000.mp4"
    data = os.urandom(size)
    work.write_bytes(data)
    ref = await staging.put("redelivered/1/0/episode-0000.mp4", work)
    video = ev.VideoAvailable(run_id="redelivered", attempt=1, session="s", episode=0, format="mp4", staged=ref,
                              frames=15, fps=15.0, duration_s=1.0, width=160, height=120, codec="h264", bytes=size,
                              sha256=hashlib.sha256(data).hexdigest(), encode_ms=1.0)
    return staging, video


async def deliver(store: ArtifactStore, staging: DirStaging, video: ev.VideoAvailable, attempt: int) -> list[ev.Event]:
    """One delivery of `video` to the uploader, followed by the uploader's reaction to what it announced
    (the staged file is deleted once its ArtifactStored is in the log): the events that came out."""
    uploader = Uploader(store, staging)
    given = Given(MemoryBus())
    out = await given.handle(uploader.on_video_available, video, attempt=attempt, stream_seq=7)
    for e in out:
        if isinstance(e, ev.ArtifactStored):
            assert await given.handle(uploader.on_artifact_stored, e) == []
    return out
