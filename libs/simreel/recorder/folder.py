"""The RecorderThread of a drop-in recorder (`simreel.gym.RecordVideo`, its vector twin, SB3's
VecVideoRecorder): every one of them decides the same way where its frames go, so the rule lives here.

A bus given by the caller or by `SIMREEL_NATS_URL` is used as it is; with neither, the recorder joins
the process's embedded stack, which keeps its artifacts and logs under `video_folder/.simreel`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from simreel.contract import events as ev
from simreel.recorder.thread import DEFAULT_QUEUE_BYTES, RecorderThread
from simreel.runtime import config
from simreel.runtime.config import NatsSettings

EMBEDDED_DIR = ".simreel"


def recorder_for_folder(video_folder: str | os.PathLike, *, name: str, nats_url: str | None = None,
                        session: str = "default", outputs: ev.OutputSpec | None = None,
                        max_queue_bytes: int = DEFAULT_QUEUE_BYTES, logger: Any = None) -> RecorderThread:
    """A recorder (not started) for videos that end up in `video_folder`. `nats_url` wins over
    `SIMREEL_NATS_URL`; `name` names its thread (and its NATS connection)."""
    url = nats_url or config.nats_url()
    nats = NatsSettings.from_env(url=url) if url else None
    return RecorderThread(nats=nats, embedded_dir=None if nats else Path(video_folder) / EMBEDDED_DIR,
                          session=session, outputs=outputs or ev.OutputSpec(), max_queue_bytes=int(max_queue_bytes),
                          logger=logger, name=name)
