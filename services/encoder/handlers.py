"""SimStarted → (frames from FRAMES) → VideoAvailable per file, TelemetryStaged; or EncodeFailed.

Each VideoAvailable is yielded (and so published by the bus) as soon as its episode's last frame is encoded, not at the end of
the run, so the first video is stored while later episodes are still simulating. Event ids are
deterministic, so a redelivered job (encoder killed mid-run) re-announces the same facts and
JetStream drops the duplicates.
"""
from __future__ import annotations

import asyncio
import contextlib
import enum
import shutil
import threading
import time
from typing import AsyncIterator, Sequence

import nats.errors

from simreel.contract import events as ev
from simreel.runtime import log as logs
from simreel.contract import subjects
from simreel.transport.bus import Delivery, HandlerBus
from simreel.runtime.config import Settings
from simreel.transport.staging import Staging
from simreel.transport.framing import FrameAssembler, FrameSequenceError

from .job import EncodeJob, Finished, file_name, telemetry_digest
from .prefetch import Fetched, Prefetch


class _JobCalls:
    """Runs one job's PyAV calls in worker threads, one at a time. Cancelling an await does not stop a
    thread that already runs: an abort (SIGTERM mid-encode) must wait for a running write to return,
    as closing a codec under it crashes the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    async def __call__(self, fn, *args):
        return await asyncio.to_thread(self._locked, fn, *args)

    def _locked(self, fn, *args):
        with self._lock:
            return fn(*args)


def _stream_seq(m) -> int | None:
    try:
        return int(m.metadata.sequence.stream)
    except Exception:  # noqa: BLE001 - no JetStream metadata: it cannot be read again by sequence
        return None


def _belongs(batch: ev.FrameBatch, st: ev.SimStarted, subject: str) -> bool:
    """The batch is of this run and attempt, and of the episode its subject names."""
    where = subjects.parse_frames(subject)
    return (batch.run_id == st.run_id and batch.attempt == st.attempt and where is not None
            and where == subjects.FramesSubject(st.run_id, str(st.attempt), str(batch.episode)))


class _Next(enum.Enum):
    """What a pass does after a message, or after a fetch that found nothing."""

    TAKE = enum.auto()  # the next message
    READ_AGAIN = enum.auto()  # drop what was read ahead: the read starts over after the last message used
    STOP = enum.auto()  # the attempt failed, was aborted or was superseded: nothing more to read


_Step = tuple[_Next, Sequence[ev.Event]]  # what comes next, and the events to yield first
_TAKE: _Step = (_Next.TAKE, ())
_STOP: _Step = (_Next.STOP, ())


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
            yield self._failed(st, "encode_failed", problem)
            return
        workdir = self.staging.tempdir()
        job = EncodeJob(st, workdir, threads=self.settings.encoder_threads)
        calls = _JobCalls()
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

    async def _encode(self, st: ev.SimStarted, job: EncodeJob, log, calls: "_JobCalls") -> AsyncIterator[ev.Event]:
        # A run's episodes normally follow each other in the stream, read in one pass. A batch
        # engine (SimStarted.worlds > 1) renders them at once, so their frames interleave: then each
        # episode's own subject is read in turn (the others wait in FRAMES), and every writer - the
        # concatenated video too - still sees one episode after the other, in constant memory.
        passes: list[int | None] = list(range(st.episodes)) if st.worlds > 1 else [None]
        for episode in passes:
            frames = _FramesPass(self, st, job, log, calls, episode)
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

    async def _after_gap(self, st: ev.SimStarted, job: EncodeJob, problem: str, log,
                         calls: "_JobCalls") -> list[ev.EncodeFailed]:
        """Frames are missing in the middle of this attempt and none was damaged: their publishes
        failed, as a JetStream leader change fails the publishes in flight while later ones reach the
        new leader. The simulator then retries the run, so failing it here would race a newer attempt
        that succeeds. Wait for that attempt, or the simulator's SimFailed, up to the frame idle
        timeout; then fail naming the gap. Nothing when the attempt was superseded."""
        log.warning("frames_missing", problem=problem)
        deadline = time.monotonic() + self.settings.frame_idle_timeout_s
        while not await self._superseded(st):
            if time.monotonic() > deadline:
                return [self._failed(st, "encode_failed", f"{problem}; no newer attempt of the run came within "
                                     f"{self.settings.frame_idle_timeout_s:.0f}s")]
            await asyncio.sleep(1.0)
        log.info("attempt_superseded")
        await calls(job.abort)
        return []

    def _rejected_frames(self, m, reason: str, log) -> ev.DeadLettered:
        """A message found among a run's frames that is not one of them. Its run_id is 'unknown': the
        message does not reliably name a run, and a dead letter on the run's own subject would mark
        that (healthy) run failed. The id follows the FRAMES sequence, so a re-read after a redelivery
        does not report it twice."""
        try:
            seq = str(m.metadata.sequence.stream)
        except Exception:  # noqa: BLE001 - no JetStream metadata: still report it
            seq = ev.new_id()
        log.warning("frame_message_rejected", subject=m.subject, reason=reason[:300])
        return ev.DeadLettered.of(f"encoder-frames-{seq}", service="encoder", subject=m.subject, reason=reason,
                                  payload=m.data)

    async def _superseded(self, st: ev.SimStarted) -> bool:
        """A newer attempt started, or the simulator already gave up: this job has nothing to wait for."""
        for event_type in (ev.SimStarted, ev.SimFailed):
            try:
                last = await self.bus.last_event(subjects.of_run(event_type, st.run_id), deadline_s=5.0)
            except (nats.errors.Error, asyncio.TimeoutError):
                continue  # cannot tell now; asked again at the next idle fetch
            if last is None:
                continue
            if isinstance(last.event, ev.SimFailed) or (isinstance(last.event, ev.SimStarted)
                                                        and last.event.attempt > st.attempt):
                return True
        return False

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

    def _failed(self, st: ev.SimStarted, code: ev.FailureCode, message: str) -> ev.EncodeFailed:
        logs.get("encoder", run_id=st.run_id).error("encode_failed", reason=message)
        return ev.EncodeFailed(event_id=f"encfail-{st.run_id}-{st.attempt}", run_id=st.run_id, attempt=st.attempt,
                               code=code, message=message)


class _FramesPass:
    """One read of a run's frames into its job: the run's subjects (`episode` None) until the job is
    complete, or one episode's own subject until that episode is encoded. Once `events()` is done,
    `complete` says whether it got there (else the attempt failed, was aborted or was superseded)."""

    def __init__(self, enc: Encoder, st: ev.SimStarted, job: EncodeJob, log, calls: _JobCalls,
                 episode: int | None) -> None:
        self.enc, self.st, self.job, self.log, self.calls, self.episode = enc, st, job, log, calls, episode
        self.complete = False
        self._assemblers: dict[int, FrameAssembler] = {}
        self._damaged = False  # a batch of this attempt was set aside: a gap after it is no publisher's fault
        # Stream sequence of the last message the job used, and where it last read again from (a
        # second gap with no progress in between is real: frames are missing from the stream).
        self._used_seq = 0
        self._resumed_at: int | None = None
        self._prefetch: Prefetch | None = None

    async def events(self) -> AsyncIterator[ev.Event]:
        """What the read announces (videos, set-aside messages, a failure), as it happens."""
        prefetch = self._prefetch = await Prefetch(self._subscribe).start()
        try:
            last_progress = time.monotonic()
            while not self._read_all():
                try:
                    msgs = await prefetch.get()
                except nats.errors.TimeoutError:
                    step, out = await self._idle(time.monotonic() - last_progress)
                    for e in out:
                        yield e
                    if step is _Next.STOP:
                        return
                    continue
                last_progress = time.monotonic()
                for item in msgs:
                    step, out = await self._take(item)
                    for e in out:
                        yield e
                    if step is _Next.STOP:
                        return
                    if step is _Next.READ_AGAIN:
                        break  # what was read ahead is dropped; the job goes on from used_seq + 1
            self.complete = True
        finally:
            await prefetch.close()

    def _read_all(self) -> bool:
        return self.job.complete if self.episode is None else self.episode in self.job.done_episodes

    async def _subscribe(self, start_seq: int | None):
        return await self.enc.bus.subscribe_frames(self.st.run_id, self.st.attempt, episode=self.episode,
                                                   start_seq=start_seq)

    async def _idle(self, idle_s: float) -> _Step:
        """A fetch found nothing: the attempt may be superseded, the read may have lost messages, or
        the frames may have stopped for good."""
        if idle_s > 5 and await self.enc._superseded(self.st):
            self.log.info("attempt_superseded")
            await self.calls(self.job.abort)
            return _STOP
        if idle_s > 5 and self._used_seq and await self._read_again(f"no frames for {idle_s:.0f}s"):
            return _TAKE
        if idle_s > self.enc.settings.frame_idle_timeout_s:
            return _Next.STOP, (self.enc._failed(self.st, "timeout", f"no frames for {idle_s:.0f}s "
                                                 f"({len(self.job.done_episodes)}/{self.st.episodes} episodes encoded)"),)
        return _TAKE

    async def _take(self, item: Fetched) -> _Step:
        """Set the message aside, let the attempt go (aborted), skip an episode already encoded, or
        write its frames."""
        rejected = self._set_aside(item)
        if rejected is not None:
            return _Next.TAKE, (rejected,)
        batch = item.batch
        if batch.aborted:
            self.log.info("attempt_aborted", episode=batch.episode)
            await self.calls(self.job.abort)
            return _STOP
        if batch.episode in self.job.done_episodes:
            return _TAKE
        if batch.episode != self.job.current_episode:
            out_of_order = self._begin_episode(batch.episode)
            if out_of_order is not None:
                return _Next.STOP, (out_of_order,)
        return await self._write(item)

    def _set_aside(self, item: Fetched) -> ev.DeadLettered | None:
        """The dead letter of a message that is not one of this attempt's frames. An undecodable one,
        or compressed frames that do not decompress, must not break the job: if real frames are
        missing, the gap fails the run."""
        m, batch = item.msg, item.batch
        if batch is None:
            self._damaged = True
            return self.enc._rejected_frames(m, item.problem, self.log)
        if not _belongs(batch, self.st, m.subject):
            return self.enc._rejected_frames(
                m, f"frame batch of run {batch.run_id!r} attempt {batch.attempt} episode {batch.episode} "
                f"on {m.subject}, which carries run {self.st.run_id!r} attempt {self.st.attempt}: ignored", self.log)
        return None

    def _begin_episode(self, episode: int) -> ev.EncodeFailed | None:
        """Open the episode's writers; its failure if the one before has not ended (the job writes
        one episode after the other)."""
        current = self.job.current_episode
        if current is not None and current not in self.job.done_episodes:
            return self.enc._failed(self.st, "encode_failed", f"episode {episode} started before episode {current} ended")
        self.job.begin_episode(episode)
        self._assemblers[episode] = FrameAssembler()
        return None

    async def _write(self, item: Fetched) -> _Step:
        """Write the batch's whole frames; after the episode's last, its finished files."""
        batch = item.batch
        try:
            frames = self._assemblers[batch.episode].feed(batch, item.pixels)
        except FrameSequenceError as e:
            return await self._gap(str(e))
        self._used_seq = _stream_seq(item.msg) or self._used_seq
        if frames:
            await self.calls(self.job.write, batch.episode, frames)
        if not batch.last:
            return _TAKE
        finished = await self.calls(self.job.end_episode, batch.episode)
        return _Next.TAKE, await self.enc._staged(self.st, finished, self.log)

    async def _gap(self, problem: str) -> _Step:
        """Frames are missing before this batch: read again once; then the run fails (a batch was set
        aside), or waits for its newer attempt (Encoder._after_gap)."""
        if await self._read_again(problem):
            return _Next.READ_AGAIN, ()
        if self._damaged:
            return _Next.STOP, (self.enc._failed(self.st, "encode_failed", problem),)
        return _Next.STOP, await self.enc._after_gap(self.st, self.job, problem, self.log, self.calls)

    async def _read_again(self, reason: str) -> bool:
        """Start over after the last message used, unless that is where the last read again started."""
        if self._resumed_at == self._used_seq:
            return False
        self.log.warning("frames_read_again", after_seq=self._used_seq, reason=reason[:200])
        self._resumed_at = self._used_seq
        await self._prefetch.resume(self._used_seq)
        return True


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

