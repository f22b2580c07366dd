"""The ui's read model: every run folded from the event log, and a fan-out of changes to open pages.

Pages get changes pushed (server-sent events) as the NATS follower applies them — nobody polls. A
page that cannot keep up is told to reload instead of slowing the follower or growing a queue.
"""
from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any

from simreel.contract import events as ev
from simreel.readmodels.projections import RecorderState, RunsIndex, fold_recorder

QUEUE_LIMIT = 2000


@dataclass(eq=False)
class Subscriber:
    """One open page. `run_id` set: that run's own events, progress and previews too."""

    run_id: str | None = None
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False

    def offer(self, kind: str, data: Any) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait((kind, data))
        except asyncio.QueueFull:
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(("reload", {}))


class Live:
    def __init__(self) -> None:
        self.index = RunsIndex()
        self.recorders: dict[str, RecorderState] = {}
        self.subscribers: set[Subscriber] = set()
        self.caught_up = asyncio.Event()
        self.events_applied = 0

    def apply(self, e: ev.Event) -> None:
        self.events_applied += 1
        rec = fold_recorder(self.recorders, e)
        replaying = not self.caught_up.is_set()  # pages get one "replayed" when the past is in
        if rec is not None:
            if replaying:
                return
            summary = rec.summary()
            for s in self.subscribers:
                if s.run_id is None:
                    s.offer("recorder", summary)
            return
        state = self.index.apply(e)
        if replaying or state is None or not self.subscribers:
            return
        summary = state.summary()
        for s in self.subscribers:
            if s.run_id is None:
                s.offer("run", summary)
            elif s.run_id == state.run_id:
                s.offer("event", {"type": type(e).__name__, "summary": summary, "event": _public(e)})

    def replayed(self) -> None:
        """The log's past is in: open pages fetch their state once, instead of one push per old event."""
        for s in self.subscribers:
            s.offer("replayed", {})

    def progress(self, run_id: str, episode: int, frame: int, frames: int | None) -> None:
        for s in self.subscribers:
            if s.run_id == run_id:
                s.offer("progress", {"episode": episode, "frame": frame, "frames": frames})

    def preview(self, run_id: str, png: bytes, episode: int, frame: int) -> None:
        data = {"episode": episode, "frame": frame, "png": base64.b64encode(png).decode()}
        for s in self.subscribers:
            if s.run_id == run_id:
                s.offer("preview", data)

    def subscribe(self, run_id: str | None = None) -> Subscriber:
        s = Subscriber(run_id)
        self.subscribers.add(s)
        return s

    def unsubscribe(self, s: Subscriber) -> None:
        self.subscribers.discard(s)


def _public(e: ev.Event) -> dict[str, Any]:
    """An event as a page may see it: no request payloads (inline scenes, assets)."""
    if isinstance(e, ev.SimRequested):
        return {"type": "SimRequested", "run_id": e.run_id, "ts": e.ts}
    import msgspec

    return msgspec.to_builtins(e)
