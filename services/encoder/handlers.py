"""SimStarted → (frames from FRAMES) → VideoAvailable per file, TelemetryStaged; or EncodeFailed.

Each VideoAvailable is published as soon as its episode's last frame is encoded, not at the end of
the run, so the first video is stored while later episodes are still simulating. Event ids are
deterministic, so a redelivered job (encoder killed mid-run) re-announces the same facts and
JetStream drops the duplicates.
"""
from __future__ import annotations

import asyncio
import contextlib
import shutil
import time

import msgspec
import nats.errors
import nats.js.errors
from nats.js import api

from simreel import events as ev
from simreel import log as logs
from simreel import subjects
from simreel.bus import Bus, Delivery
from simreel.config import Settings
from simreel.framing import FrameAssembler, FrameSequenceError

from .job import EncodeJob, Finished, file_name, telemetry_digest


class Encoder:
    def __init__(self, bus: Bus, settings: Settings, staging) -> None:
        self.bus = bus
        self.settings = settings
        self.staging = staging

    async def on_sim_started(self, st: ev.SimStarted, delivery: Delivery) -> list[ev.Event]:
        log = logs.get("encoder", run_id=st.run_id, attempt=st.attempt)
        workdir = self.staging.tempdir()
        job = EncodeJob(st, workdir, threads=self.settings.encoder_threads)
        t0 = time.monotonic()
        try:
            result = await self._encode(st, job, log)
        except BaseException:
            await asyncio.to_thread(job.abort)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        shutil.rmtree(workdir, ignore_errors=True)
        if result is None:  # the attempt was aborted by the simulator; it reports why
            return []
        if isinstance(result, ev.EncodeFailed):
            return [result]
        with contextlib.suppress(Exception):
            await self.bus.js.purge_stream(subjects.FRAMES_STREAM, subject=subjects.run_frames(st.run_id, st.attempt))
        log.info("run_encoded", wall_s=round(time.monotonic() - t0, 2))
        return []

    async def _encode(self, st: ev.SimStarted, job: EncodeJob, log):
        sub = await self.bus.js.pull_subscribe(
            subjects.run_frames(st.run_id, st.attempt),
            stream=subjects.FRAMES_STREAM,
            config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL, ack_policy=api.AckPolicy.NONE,
                                      inactive_threshold=300.0, mem_storage=True),
        )
        assemblers: dict[int, FrameAssembler] = {}
        last_progress = time.monotonic()
        try:
            while not job.complete:
                try:
                    msgs = await sub.fetch(4, timeout=2.0)
                except nats.errors.TimeoutError:
                    idle = time.monotonic() - last_progress
                    if idle > 5 and await self._superseded(st):
                        log.info("attempt_superseded")
                        await asyncio.to_thread(job.abort)
                        return None
                    if idle > self.settings.frame_idle_timeout_s:
                        return self._failed(st, "timeout", f"no frames for {idle:.0f}s "
                                            f"({len(job.done_episodes)}/{st.episodes} episodes encoded)")
                    continue
                last_progress = time.monotonic()
                for m in msgs:
                    try:
                        batch = ev.decode_frames(m.data)
                    except (msgspec.DecodeError, msgspec.ValidationError) as e:
                        return self._failed(st, "encode_failed", f"undecodable frame batch on {m.subject}: {e}")
                    if batch.aborted:
                        log.info("attempt_aborted", episode=batch.episode)
                        await asyncio.to_thread(job.abort)
                        return None
                    if batch.episode in job.done_episodes:
                        continue
                    if batch.episode != job.current_episode:
                        if job.current_episode is not None and job.current_episode not in job.done_episodes:
                            return self._failed(st, "encode_failed",
                                                f"episode {batch.episode} started before episode {job.current_episode} ended")
                        job.begin_episode(batch.episode)
                        assemblers[batch.episode] = FrameAssembler()
                    try:
                        frames = assemblers[batch.episode].feed(batch)
                    except FrameSequenceError as e:
                        return self._failed(st, "encode_failed", str(e))
                    if frames:
                        await asyncio.to_thread(job.write, batch.episode, frames)
                    if batch.last:
                        finished = await asyncio.to_thread(job.end_episode, batch.episode)
                        await self._announce(st, finished, log)
            finished, telemetry = await asyncio.to_thread(job.finish)
            await self._announce(st, finished, log)
            if telemetry is not None:
                size, sha = await asyncio.to_thread(telemetry_digest, telemetry)
                ref = await self.staging.put(f"{st.run_id}/{st.attempt}/telemetry.jsonl", telemetry)
                await self.bus.publish(ev.TelemetryStaged(
                    event_id=f"telemetry-{st.run_id}-{st.attempt}", run_id=st.run_id, attempt=st.attempt,
                    session=st.session, staged=ref, rows=job.telemetry_rows, bytes=size, sha256=sha))
            return True
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _superseded(self, st: ev.SimStarted) -> bool:
        """A newer attempt started, or the simulator already gave up: this job has nothing to wait for."""
        for subject in (f"simreel.evt.sim.started.{st.run_id}", f"simreel.evt.sim.failed.{st.run_id}"):
            try:
                raw = await self.bus.js.get_last_msg(subjects.EVENTS_STREAM, subject)
            except (nats.js.errors.NotFoundError, nats.errors.TimeoutError, nats.js.errors.APIError):
                continue
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                last = ev.decode(raw.data)
                if isinstance(last, ev.SimFailed) or (isinstance(last, ev.SimStarted) and last.attempt > st.attempt):
                    return True
        return False

    async def _announce(self, st: ev.SimStarted, finished: list[Finished], log) -> None:
        for f in finished:
            name = file_name(f.episode, f.format, f.camera)
            ep = "all" if f.episode is None else str(f.episode)
            cam = f"-{f.camera}" if f.camera else ""
            ref = await self.staging.put(f"{st.run_id}/{st.attempt}/{ep}/{name}", f.info.path)
            info = f.info
            await self.bus.publish(ev.VideoAvailable(
                event_id=f"video-{st.run_id}-{st.attempt}-{ep}-{f.format}{cam}", run_id=st.run_id,
                attempt=st.attempt, session=st.session, episode=f.episode, camera=f.camera, format=f.format, staged=ref, frames=info.frames,
                fps=float(info.fps), duration_s=info.duration_s, width=info.width, height=info.height,
                codec=info.codec, bytes=info.bytes, sha256=info.sha256, encode_ms=info.encode_ms,
                spans=f.spans, warnings=f.warnings))
            log.info("video_encoded", episode=ep, type=f.format, staged=ref, frames=info.frames, fps=info.fps,
                     encode_ms=round(info.encode_ms, 1), bytes=info.bytes)

    def _failed(self, st: ev.SimStarted, code: str, message: str) -> ev.EncodeFailed:
        logs.get("encoder", run_id=st.run_id).error("encode_failed", reason=message)
        return ev.EncodeFailed(event_id=f"encfail-{st.run_id}-{st.attempt}", run_id=st.run_id, attempt=st.attempt,
                               code=code, message=message)
