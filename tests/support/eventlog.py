"""The event log and the client, seen from a test: follow EVENTS, replay it, submit, wait for a result."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any, Callable, Iterable

import msgspec
import nats
import nats.errors
from nats.js import api

from simreel.client import Client, RunResult
from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.runtime.config import NatsSettings
from simreel.transport.bus import Bus, connect

from tests.support.waits import until


async def claimed(js, service: str) -> int:
    """Messages the service's work consumer has handed out and not yet seen acked (a replica holds them)."""
    return (await js.consumer_info(subjects.EVENTS_STREAM, service)).num_ack_pending


class Tap:
    """Follows every event in EVENTS from the start, in the background; tests wait on what it saw."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self.events: list[ev.Event] = []
        self.raw: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.nc: nats.NATS | None = None

    async def __aenter__(self) -> "Tap":
        self.nc = await connect(self.settings, name="reliability-tap")
        await Bus(self.nc).ensure_streams()  # services may not have created them yet
        js = self.nc.jetstream()
        # Retried like Bus.follow: on a busy machine a fresh cluster can take longer than the 5 s API
        # timeout to create the consumer, and that is not what any test here is about.
        sub = await until(lambda: js.subscribe("simreel.evt.>", stream=subjects.EVENTS_STREAM, ordered_consumer=True,
                                               deliver_policy=api.DeliverPolicy.ALL),
                          timeout=60, what="a consumer on the event log")

        async def pump() -> None:
            while True:
                try:
                    m = await sub.next_msg(timeout=3600)
                except nats.errors.TimeoutError:
                    continue
                self.raw.append((m.subject, m.data))
                with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                    self.events.append(ev.decode(m.data))
                self._changed.set()

        self._task = asyncio.create_task(pump())
        return self

    async def __aexit__(self, *exc) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self.nc:
            with contextlib.suppress(Exception):
                await self.nc.close()

    def of(self, run_id: str, kind: type | tuple[type, ...] = ev.Event) -> list:
        return [e for e in self.events if e.run_id == run_id and isinstance(e, kind)]

    async def wait(self, pred: Callable[[list[ev.Event]], Any], *, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = pred(self.events)
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                     f"seen: {summary(self.events)}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))


def summary(events: Iterable[ev.Event]) -> str:
    c = collections.Counter(f"{type(e).__name__}" for e in events)
    return ", ".join(f"{k}×{v}" for k, v in sorted(c.items()))


async def replay(settings: NatsSettings, filter_subject: str = "simreel.evt.>") -> list[ev.Event]:
    bus = Bus(await connect(settings, name="reliability-replay"))
    try:
        return [e async for e in bus.replay(filter_subject)]
    finally:
        await bus.close()


async def wait_result(settings: NatsSettings, run_id: str, timeout: float) -> RunResult:
    client = Client(Bus(await connect(settings, name="reliability-client")))
    try:
        return await client.wait(run_id, timeout=timeout)
    finally:
        await client.close()


async def wait_result_alive(settings: NatsSettings, run_id: str, stack, timeout: float) -> RunResult:
    """wait_result, but a service process that dies fails the test at once, naming it (a dead
    service otherwise shows only as a run that never finishes)."""
    def dead() -> list[str]:
        return [f"{name}-{i}" for name, procs in stack.procs.items() for i, p in enumerate(procs) if p.poll() is not None]

    waiting = asyncio.create_task(wait_result(settings, run_id, timeout))
    watching = asyncio.create_task(until(dead, timeout=timeout + 30, what="a service to die", interval=0.5))
    try:
        done, _ = await asyncio.wait({waiting, watching}, return_when=asyncio.FIRST_COMPLETED)
        if waiting in done:
            return waiting.result()
        raise AssertionError(f"service process died while the run was waited on: {', '.join(watching.result())}")
    finally:
        for t in (waiting, watching):
            t.cancel()
        await asyncio.gather(waiting, watching, return_exceptions=True)


async def submit(settings: NatsSettings, *reqs: ev.SimRequested) -> None:
    client = Client(Bus(await connect(settings, name="reliability-submit")))
    try:
        await client.bus.ensure_streams()
        for r in reqs:
            await client.submit(r)
    finally:
        await client.close()


async def frames_in_stream(js, run_id: str) -> int:
    """FrameBatch messages of a run still held in FRAMES."""
    info = await js.stream_info(subjects.FRAMES_STREAM, subjects_filter=subjects.run_frames(run_id))
    return sum((info.state.subjects or {}).values())


def stored_counts(events: Iterable[ev.Event]) -> collections.Counter:
    return collections.Counter(e.key for e in events if isinstance(e, ev.ArtifactStored))
