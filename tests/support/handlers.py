"""Handlers (and timers' ticks) without NATS: "given these events, these events come out".

`MemoryBus` is the part of simreel.transport.bus.Bus that handlers and their helpers use (publish, look up the
last event of a subject, publish and read frames), kept in lists. `Given` feeds events to a handler
through the same `handler_events` the real bus uses, and records what comes out in the MemoryBus as
the real bus would publish it. Delivery rules (acks, retries, dead letters) are tested on a real
nats-server in tests/integration and tests/reliability; this is for what handlers decide.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import nats.errors

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.transport.bus import Delivery, Handler, Logged, handler_events
from simreel.transport.periodic import Tick, tick_events


@dataclass
class FrameMessage:
    """A stored FRAMES message, shaped like the nats Msg the encoder reads."""

    subject: str
    data: bytes
    seq: int

    @property
    def metadata(self) -> SimpleNamespace:
        return SimpleNamespace(sequence=SimpleNamespace(stream=self.seq))


def _matches(pattern: str, subject: str) -> bool:
    """NATS wildcards: `*` is one token, `>` the rest."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or token not in ("*", s[i]):
            return False
    return len(p) == len(s)


class _FrameSubscription:
    def __init__(self, bus: "MemoryBus", pattern: str, start_seq: int) -> None:
        self._bus, self._pattern, self._next_seq = bus, pattern, start_seq

    async def fetch(self, batch: int = 1, timeout: float = 1.0) -> list[FrameMessage]:
        found = [m for m in self._bus.frames
                 if m.seq >= self._next_seq and _matches(self._pattern, m.subject)][:batch]
        if not found:
            await asyncio.sleep(min(timeout, 0.05))
            raise nats.errors.TimeoutError
        self._next_seq = found[-1].seq + 1
        return found

    async def unsubscribe(self) -> None:
        pass


class MemoryBus:
    """Events and frames in lists, with JetStream's duplicate window on both (by id)."""

    def __init__(self, max_payload: int = 1 << 20) -> None:
        self.max_payload = max_payload
        self.reconnects = 0  # a memory bus never loses its connection
        self.log: list[tuple[int, str, ev.Event]] = []  # (stream seq, subject, event)
        self.frames: list[FrameMessage] = []
        self._ids: set[str] = set()
        self._seq = 0

    @property
    def events(self) -> list[ev.Event]:
        return [e for _, _, e in self.log]

    def of(self, event_type: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, event_type)]

    async def publish(self, event: ev.Event) -> None:
        ev.decode(ev.encode(event))  # what the wire would refuse, refused here too
        if event.event_id in self._ids:
            return
        self._ids.add(event.event_id)
        self._seq += 1
        self.log.append((self._seq, subjects.subject_for(event), event))

    async def publish_all(self, events) -> None:
        for e in events:
            await self.publish(e)

    async def last_event(self, subject: str, *, deadline_s: float = 30.0) -> Logged | None:
        for seq, subj, e in reversed(self.log):
            if subj == subject:
                return Logged(seq, e)
        return None

    async def replay(self, filter_subject: str | list[str] = "simreel.evt.>", **_: Any):
        """Every event stored so far on the subjects, oldest first (as Bus.replay)."""
        filters = [filter_subject] if isinstance(filter_subject, str) else list(filter_subject)
        for _seq, subj, e in list(self.log):
            if any(_matches(f, subj) for f in filters):
                yield e

    async def publish_frame_data(self, subject: str, data: bytes, msg_id: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if msg_id not in self._ids:
            self._ids.add(msg_id)
            self._seq += 1
            self.frames.append(FrameMessage(subject, bytes(data), self._seq))
        fut.set_result(None)
        return fut

    async def subscribe_frames(self, run_id: str, attempt: int, *, episode: int | None = None,
                               start_seq: int | None = None) -> _FrameSubscription:
        subject = subjects.run_frames(run_id, attempt) if episode is None else subjects.frames(run_id, attempt, episode)
        return _FrameSubscription(self, subject, start_seq or 0)

    async def purge_frames(self, run_id: str, attempt: int | None = None) -> None:
        pattern = subjects.run_frames(run_id, attempt)
        self.frames = [m for m in self.frames if not _matches(pattern, m.subject)]

    async def frame_subjects(self) -> list[str]:
        return sorted({m.subject for m in self.frames})


class Given:
    """`await Given(bus).handle(handler, event)` → the events the handler produced, in order, also
    published to `bus` (so later lookups see them, as on NATS)."""

    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus

    async def handle(self, handler: Handler, event: ev.Event, *, attempt: int = 1,
                     stream_seq: int | None = None) -> list[ev.Event]:
        if stream_seq is None:
            await self.bus.publish(event)
            stream_seq = next((seq for seq, _, e in self.bus.log if e.event_id == event.event_id), 0)
        delivery = Delivery(subject=subjects.subject_for(event), attempt=attempt, stream_seq=stream_seq)
        out = []
        async for produced in handler_events(handler, event, delivery):
            await self.bus.publish(produced)
            out.append(produced)
        return out

    async def tick(self, tick: Tick) -> list[ev.Event]:
        """One run of a service's timer (simreel.transport.periodic): the events it produced, in order,
        also published to `bus` as `every` publishes them."""
        out = []
        async for produced in tick_events(tick):
            await self.bus.publish(produced)
            out.append(produced)
        return out

    async def handle_all(self, handler: Handler, events, **kw) -> list[ev.Event]:
        out = []
        for e in events:
            out += await self.handle(handler, e, **kw)
        return out
