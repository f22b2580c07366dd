"""Creating the EVENTS and FRAMES streams, and sizing FRAMES to what the server can hold.

Every service and client calls `ensure_streams`, so the order of start never matters; an existing
stream is left as configured (operators may have tuned it).
"""
from __future__ import annotations

import asyncio
import collections

import nats.js.errors
from nats.js import JetStreamContext, api

from simreel.contract import subjects
from simreel.runtime import log as logs
from simreel.transport.connection import JS_UNAVAILABLE

log = logs.get("simreel.bus")

# FRAMES holds the frames of runs in flight until their videos are staged. 8 GiB is what it asks for
# when the server can hold it; below 64 MiB (a few hundred compressed 640x480 frames) it is no use.
FRAMES_DEFAULT_BYTES = 8 * 1024**3
FRAMES_MIN_BYTES = 64 * 1024**2
# JetStream's answers when a stream's max_bytes is more than its storage can reserve: a single server
# (10047, insufficient storage resources) or a cluster with no peer that has room (10023).
_INSUFFICIENT_STORAGE = {10047, 10023}


class FramesStorageError(RuntimeError):
    """The NATS server cannot hold a useful FRAMES stream; the message says what to change."""


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.0f} MiB"


async def ensure_streams(js: JetStreamContext, *, replicas: int = 1, frames_max_bytes: int = 0,
                         retries: collections.Counter[str] | None = None) -> None:
    """Create EVENTS and FRAMES if missing (`frames_max_bytes` 0: FRAMES sized from what the server
    can hold). Each retry while JetStream does not answer is counted in `retries["ensure_streams"]`.

    Retried while JetStream does not answer: in a cluster that just lost a node, the stream info
    request waits for a leader election (it timed out after 10 s on a busy machine), and a
    service that died of that at start stayed dead while runs waited on it forever."""
    for name in (subjects.EVENTS_STREAM, subjects.FRAMES_STREAM):
        delay = 0.25
        while True:
            try:
                if name == subjects.EVENTS_STREAM:
                    await ensure_stream(js, subjects.events_stream(replicas=replicas))
                else:
                    await ensure_frames(js, replicas=replicas, frames_max_bytes=frames_max_bytes)
                break
            except JS_UNAVAILABLE as e:
                if retries is not None:
                    retries["ensure_streams"] += 1
                log.warning("ensure_streams_retry", stream=name, error=type(e).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


async def ensure_stream(js: JetStreamContext, cfg: api.StreamConfig) -> bool:
    """Create the stream unless it exists; True if this call created it."""
    try:
        await js.stream_info(cfg.name)
        return False
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(cfg)
            return True
        except nats.js.errors.BadRequestError as e:  # created concurrently by another process
            if "already in use" not in str(e):
                raise
            return False


async def ensure_frames(js: JetStreamContext, *, replicas: int = 1, frames_max_bytes: int = 0) -> None:
    """FRAMES, sized from what the server can hold and what the operator set.

    JetStream reserves a stream's max_bytes up front and refuses a stream larger than its storage
    (err 10047): a fixed 8 GiB kept every machine with less than ~11 GB free disk from starting.
    An operator's SIMREEL_FRAMES_MAX_BYTES is taken as it is or refused with a clear error.
    Otherwise the size halves from 8 GiB until the server accepts it, and when the server's
    storage was the limit the stream takes half of what it accepted, leaving the rest to the event
    log and staged files on the same disk."""
    wanted = frames_max_bytes or FRAMES_DEFAULT_BYTES
    size = wanted
    while True:
        try:
            created = await ensure_stream(js, subjects.frames_stream(max_bytes=size, replicas=replicas))
            break
        except nats.js.errors.APIError as e:
            if e.err_code not in _INSUFFICIENT_STORAGE:
                raise
            if frames_max_bytes:
                raise FramesStorageError(
                    f"the NATS server cannot hold a FRAMES stream of {_mib(size)} (SIMREEL_FRAMES_MAX_BYTES; "
                    "JetStream: insufficient storage resources): lower it, or give the server more "
                    "disk (its JetStream store directory, max_file_store)") from None
            size //= 2
            if size < FRAMES_MIN_BYTES:
                raise FramesStorageError(
                    f"the NATS server cannot hold even {_mib(FRAMES_MIN_BYTES)} for the FRAMES stream "
                    "(JetStream: insufficient storage resources): free disk space where its JetStream "
                    "store directory is (the embedded stack keeps it under its data directory, "
                    "TMPDIR by default), or raise the server's max_file_store") from None
    if not created:
        return
    limited = size < wanted
    if limited and size // 2 >= FRAMES_MIN_BYTES:
        size //= 2
        await js.update_stream(subjects.frames_stream(max_bytes=size, replicas=replicas))
    log.info("frames_stream_created", max_bytes=size, wanted=wanted,
             sized_by="server storage" if limited else
             ("SIMREEL_FRAMES_MAX_BYTES" if frames_max_bytes else "default"))
