"""One read of a run's frames into its encode job, and what the encoder decides on the way.

Messages come from FRAMES through the read-ahead (prefetch.py); each is checked (this attempt's, in
order) before its frames go to the job. A pass ends when it has read what it was for, or when the
attempt is over for the encoder: it failed, was aborted (the simulator's aborted batch) or was
superseded (a newer attempt, or the simulator's SimFailed, in the log).
"""
from __future__ import annotations

import asyncio
import enum
import time
from typing import AsyncIterator, Awaitable, Callable, Sequence

import nats.errors

from simreel.contract import events as ev
from simreel.runtime import log as logs
from simreel.contract import subjects
from simreel.transport.bus import HandlerBus
from simreel.transport.framing import FrameAssembler, FrameSequenceError

from .job import EncodeJob, Finished, JobCalls
from .prefetch import Fetched, Prefetch


class _Next(enum.Enum):
    """What a pass does after a message, or after a fetch that found nothing."""

    TAKE = enum.auto()  # the next message
    READ_AGAIN = enum.auto()  # drop what was read ahead: the read starts over after the last message used
    STOP = enum.auto()  # the attempt failed, was aborted or was superseded: nothing more to read


_Step = tuple[_Next, Sequence[ev.Event]]  # what comes next, and the events to yield first
_TAKE: _Step = (_Next.TAKE, ())
_STOP: _Step = (_Next.STOP, ())

# Files finished by the job → their announcements, once staged.
Stage = Callable[[list[Finished]], Awaitable[Sequence[ev.Event]]]


class FramesPass:
    """Reads the run's subjects (`episode` None) until the job is complete, or one episode's own
    subject until that episode is encoded. Once `events()` is done, `complete` says whether it got
    there (else the attempt failed, was aborted or was superseded)."""

    def __init__(self, bus: HandlerBus, st: ev.SimStarted, job: EncodeJob, calls: JobCalls, *,
                 episode: int | None, stage: Stage, idle_timeout_s: float, log) -> None:
        self.bus, self.st, self.job, self.calls = bus, st, job, calls
        self.episode, self.stage, self.idle_timeout_s, self.log = episode, stage, idle_timeout_s, log
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
        return await self.bus.subscribe_frames(self.st.run_id, self.st.attempt, episode=self.episode,
                                               start_seq=start_seq)

    async def _idle(self, idle_s: float) -> _Step:
        """A fetch found nothing: the attempt may be superseded, the read may have lost messages, or
        the frames may have stopped for good."""
        if idle_s > 5 and await superseded(self.bus, self.st):
            self.log.info("attempt_superseded")
            await self.calls(self.job.abort)
            return _STOP
        if idle_s > 5 and self._used_seq and await self._read_again(f"no frames for {idle_s:.0f}s"):
            return _TAKE
        if idle_s > self.idle_timeout_s:
            return _Next.STOP, (encode_failed(self.st, "timeout", f"no frames for {idle_s:.0f}s "
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
            return _rejected_frames(m, item.problem, self.log)
        if not _belongs(batch, self.st, m.subject):
            return _rejected_frames(
                m, f"frame batch of run {batch.run_id!r} attempt {batch.attempt} episode {batch.episode} "
                f"on {m.subject}, which carries run {self.st.run_id!r} attempt {self.st.attempt}: ignored", self.log)
        return None

    def _begin_episode(self, episode: int) -> ev.EncodeFailed | None:
        """Open the episode's writers; or its failure, if the one before has not ended (the job
        writes one episode after the other)."""
        current = self.job.current_episode
        if current is not None and current not in self.job.done_episodes:
            return encode_failed(self.st, "encode_failed", f"episode {episode} started before episode {current} ended")
        self.job.begin_episode(episode)
        self._assemblers[episode] = FrameAssembler()
        return None

    async def _write(self, item: Fetched) -> _Step:
        """Write the batch's whole frames; after the episode's last, announce its finished files."""
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
        return _Next.TAKE, await self.stage(finished)

    async def _gap(self, problem: str) -> _Step:
        """Frames are missing before this batch: read again once; then the run fails if a batch was
        set aside, or else waits for its newer attempt."""
        if await self._read_again(problem):
            return _Next.READ_AGAIN, ()
        if self._damaged:
            return _Next.STOP, (encode_failed(self.st, "encode_failed", problem),)
        return _Next.STOP, await self._wait_for_newer_attempt(problem)

    async def _wait_for_newer_attempt(self, problem: str) -> list[ev.EncodeFailed]:
        """Frames are missing in the middle of this attempt and none was damaged: their publishes
        failed, as a JetStream leader change fails the publishes in flight while later ones reach the
        new leader. The simulator then retries the run, so failing it here would race a newer attempt
        that succeeds. Wait for that attempt, or the simulator's SimFailed, up to the frame idle
        timeout; then fail naming the gap. Nothing when the attempt was superseded."""
        self.log.warning("frames_missing", problem=problem)
        deadline = time.monotonic() + self.idle_timeout_s
        while not await superseded(self.bus, self.st):
            if time.monotonic() > deadline:
                return [encode_failed(self.st, "encode_failed", f"{problem}; no newer attempt of the run came within "
                                      f"{self.idle_timeout_s:.0f}s")]
            await asyncio.sleep(1.0)
        self.log.info("attempt_superseded")
        await self.calls(self.job.abort)
        return []

    async def _read_again(self, reason: str) -> bool:
        """Start over after the last message used, unless that is where the last read again started."""
        if self._resumed_at == self._used_seq:
            return False
        self.log.warning("frames_read_again", after_seq=self._used_seq, reason=reason[:200])
        self._resumed_at = self._used_seq
        await self._prefetch.resume(self._used_seq)
        return True


async def superseded(bus: HandlerBus, st: ev.SimStarted) -> bool:
    """A newer attempt started, or the simulator already gave up: this job has nothing to wait for."""
    for event_type in (ev.SimStarted, ev.SimFailed):
        try:
            last = await bus.last_event(subjects.of_run(event_type, st.run_id), deadline_s=5.0)
        except (nats.errors.Error, asyncio.TimeoutError):
            continue  # cannot tell now; asked again at the next idle fetch
        if last is None:
            continue
        if isinstance(last.event, ev.SimFailed) or (isinstance(last.event, ev.SimStarted)
                                                    and last.event.attempt > st.attempt):
            return True
    return False


def encode_failed(st: ev.SimStarted, code: ev.FailureCode, message: str) -> ev.EncodeFailed:
    logs.get("encoder", run_id=st.run_id).error("encode_failed", reason=message)
    return ev.EncodeFailed(event_id=f"encfail-{st.run_id}-{st.attempt}", run_id=st.run_id, attempt=st.attempt,
                           code=code, message=message)


def _rejected_frames(m, reason: str, log) -> ev.DeadLettered:
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
