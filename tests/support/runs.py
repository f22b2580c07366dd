"""Test helpers that drive a real stack through the public client."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import nats.errors
import nats.js.errors

from simreel.contract import events as ev
from simreel.client import Client, RunResult
from simreel.runtime.config import NatsSettings


async def run_request(url: str, req: ev.SimRequested, timeout: float = 120.0) -> tuple[RunResult, list[ev.Event]]:
    seen: list[ev.Event] = []
    client = await Client.connect(NatsSettings(url=url))
    try:
        result = await client.run(req, timeout=timeout, on_event=lambda e, s: seen.append(e))
    finally:
        await client.close()
    return result, seen


def small_request(**kw) -> ev.SimRequested:
    base = dict(scene="cartpole", episodes=1, duration_s=1.0, policy="random",
                render=ev.RenderSpec(width=160, height=120, fps=15, quality="fast"))
    base.update(kw)
    return ev.SimRequested(**base)


async def events_stream_exists(js, timeout: float = 60.0) -> None:
    """Wait for the stack's services to have created the EVENTS stream (a plain client publishes after)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await js.stream_info("EVENTS")
            return
        except (nats.js.errors.NotFoundError, nats.errors.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def request(run_id: str, *, duration_s: float = 1.0, episodes: int = 1, seed: int = 7, fps: int = 15,
            policy: str = "random", **kw) -> ev.SimRequested:
    """A small request with a given id and seed: 160×120, fast quality, a cheap scene."""
    base: dict[str, Any] = dict(run_id=run_id, scene="cartpole", episodes=episodes, duration_s=duration_s,
                                seed=seed, policy=policy,
                                render=ev.RenderSpec(width=160, height=120, fps=fps, quality="fast"))
    base.update(kw)
    return ev.SimRequested(**base)


def frames_of(req: ev.SimRequested) -> int:
    return round(req.duration_s * req.render.fps)
