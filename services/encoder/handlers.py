"""SimStarted → (frames from FRAMES) → VideoAvailable per file, TelemetryStaged; or EncodeFailed.

Each VideoAvailable is yielded (and so published by the bus) as soon as its episode's last frame is encoded, not at the end of
the run, so the first video is stored while later episodes are still simulating. Event ids are
deterministic, so a redelivered job (encoder killed mid-run) re-announces the same facts and
JetStream drops the duplicates.
"""
from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from typing import AsyncIterator

from simreel.contract import events as ev
from simreel.runtime import log as logs
from simreel.transport.bus import Delivery, HandlerBus
from simreel.runtime.config import Settings
from simreel.transport.staging import Staging

from .frames_pass import FramesPass, encode_failed
from .job import EncodeJob, Finished, JobCalls, file_name, telemetry_digest


class Encoder:
    def __init__(self, bus: HandlerBus, settings: Settings, staging: Staging) -> None:
        self.bus = bus
        self.settings = settings
        self.staging = staging

    async def on_sim_started(self, st: ev.SimStarted, delivery: Delivery) -> AsyncIterator[ev.Event]:
        """Yields a VideoAvailable per file as soon as it is staged, then TelemetryStaged; or
        EncodeFailed. Nothing more when the attempt was aborted or superseded (the simulator says why)."""
        log = logs.get("encoder", run_id=st.run_id, attempt=st.attempt)
        # Which replica holds which run (operators, and the reliability tests that kill it).
        log.info("encode_started", episodes=st.episodes, frames_per_episode=st.frames_per_episode,
                 delivery=delivery.attempt)
        problem = _unsupported(st.outputs, previews=len(st.streams) > 1)
        if problem:
            yield encode_failed(st, "encode_failed", problem)
            return
        workdir = self.staging.tempdir()
        job = EncodeJob(st, workdir, threads=self.settings.encoder_threads)
        calls = JobCalls()
        t0 = time.monotonic()
        failed = False
        try:
            async for e in self._encode(st, job, log, calls):
                failed = failed or isinstance(e, ev.EncodeFailed)
                yield e
        except BaseException:
            await calls(job.abort)
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if failed:
            return
        # Encoded, aborted or superseded: the attempt's frames will never be read again. Drop them now
        # rather than after FRAMES' 1 h max_age (they count against the stream's byte cap, which refuses
        # new frames when full).
        with contextlib.suppress(Exception):
            await self.bus.purge_frames(st.run_id, st.attempt)
        log.info("run_encoded" if job.complete else "run_let_go", wall_s=round(time.monotonic() - t0, 2))

    async def _encode(self, st: ev.SimStarted, job: EncodeJob, log, calls: JobCalls) -> AsyncIterator[ev.Event]:
        # A run's episodes normally follow each other in the stream, read in one pass. A batch
        # engine (SimStarted.worlds > 1) renders them at once, so their frames interleave: then each
        # episode's own subject is read in turn (the others wait in FRAMES), and every writer - the
        # concatenated video too - still sees one episode after the other, in constant memory.
        passes: list[int | None] = list(range(st.episodes)) if st.worlds > 1 else [None]
        idle_timeout_s = self.settings.frame_idle_timeout_s

        def stage(finished: list[Finished]):
            return self._staged(st, finished, log)

        for episode in passes:
            frames = FramesPass(self.bus, st, job, calls, episode=episode, stage=stage, idle_timeout_s=idle_timeout_s,
                                log=log)
            async for e in frames.events():
                yield e
            if not frames.complete:
                return  # failed, aborted or superseded
        finished, telemetry = await calls(job.finish)
        for video in await self._staged(st, finished, log):
            yield video
        if telemetry is not None:
            size, sha = await asyncio.to_thread(telemetry_digest, telemetry)
            ref = await self.staging.put(f"{st.run_id}/{st.attempt}/telemetry.jsonl", telemetry)
            yield ev.TelemetryStaged(
                event_id=f"telemetry-{st.run_id}-{st.attempt}", run_id=st.run_id, attempt=st.attempt,
                session=st.session, staged=ref, rows=job.telemetry_rows, bytes=size, sha256=sha)

    async def _staged(self, st: ev.SimStarted, finished: list[Finished], log) -> list[ev.VideoAvailable | ev.VideoHeld]:
        """Stage each finished file; its VideoAvailable, or for a run with a keep rule its VideoHeld
        (the episode's EpisodeKept or EpisodeDiscarded decides what becomes of it)."""
        out = []
        for f in finished:
            name = file_name(f.episode, f.format, f.camera, f.stream)
            ep = "all" if f.episode is None else str(f.episode)
            cam = f"-{f.camera}" if f.camera else ""
            cam += f"-{f.stream}" if f.stream != "rgb" else ""
            ref = await self.staging.put(f"{st.run_id}/{st.attempt}/{ep}/{name}", f.info.path)
            info = f.info
            held = st.outputs.keep is not None and f.episode is not None
            event_type = ev.VideoHeld if held else ev.VideoAvailable
            out.append(event_type(
                event_id=f"{'held' if held else 'video'}-{st.run_id}-{st.attempt}-{ep}-{f.format}{cam}", run_id=st.run_id,
                attempt=st.attempt, session=st.session, episode=f.episode, camera=f.camera, stream=f.stream,
                format=f.format, staged=ref, frames=info.frames,
                fps=float(info.fps), duration_s=info.duration_s, width=info.width, height=info.height,
                codec=info.codec, bytes=info.bytes, sha256=info.sha256, encode_ms=info.encode_ms,
                spans=f.spans, warnings=f.warnings))
            log.info("video_held" if held else "video_encoded", episode=ep, type=f.format, staged=ref, frames=info.frames, fps=info.fps,
                     encode_ms=round(info.encode_ms, 1), bytes=info.bytes)
        return out



def _unsupported(o: ev.OutputSpec, *, previews: bool = False) -> str | None:
    """Options this encoder cannot honour, said before any frame is read (not after five retries).
    `previews`: the run has depth or segmentation, whose previews are MP4s in the request's codec."""
    from simreel.media.mp4 import available_codecs

    if ("mp4" in o.formats or "gif" in o.formats or previews) and o.codec not in available_codecs():
        return f"codec {o.codec!r} is not in this encoder's PyAV build (available: {', '.join(available_codecs())})"
    lo, hi = ev.CRF_RANGE[o.codec]
    if not lo <= o.crf <= hi:
        return f"crf {o.crf} is out of range for {o.codec} ({lo}..{hi})"
    return None

