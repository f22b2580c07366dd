"""Tools of the reliability suite: watch the event log, wait on conditions, kill real processes.

Every wait here is on an event or a condition with a bounded timeout; nothing sleeps a fixed time
hoping something happened.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

import av
import msgspec
import nats
import nats.errors
from nats.js import api

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.transport.bus import Bus, connect
from simreel.client import Client, RunResult
from simreel.runtime.config import NatsSettings

# --- requests ------------------------------------------------------------------------------------


def request(run_id: str, *, duration_s: float = 1.0, episodes: int = 1, seed: int = 7, fps: int = 15,
            policy: str = "random", **kw) -> ev.SimRequested:
    """A small request: 160×120, fast quality, a cheap scene."""
    base: dict[str, Any] = dict(run_id=run_id, scene="cartpole", episodes=episodes, duration_s=duration_s,
                                seed=seed, policy=policy,
                                render=ev.RenderSpec(width=160, height=120, fps=fps, quality="fast"))
    base.update(kw)
    return ev.SimRequested(**base)


def frames_of(req: ev.SimRequested) -> int:
    return round(req.duration_s * req.render.fps)


GATED_POLICY = "entrypoint:tests.reliability.policies:gated"


class Gate:
    """Holds runs that use GATED_POLICY at sim time `at_s` until opened (see policies.gated)."""

    def __init__(self, path: Path, at_s: float = 1.0) -> None:
        self.path, self.at_s = Path(path), at_s
        self.path.unlink(missing_ok=True)

    @property
    def params(self) -> dict[str, Any]:
        return {"gate": str(self.path), "at_s": self.at_s}

    def open(self) -> None:
        self.path.touch()


async def claimed(js, service: str) -> int:
    """Messages the service's work consumer has handed out and not yet seen acked (a replica holds them)."""
    return (await js.consumer_info(subjects.EVENTS_STREAM, service)).num_ack_pending


# --- conditions ----------------------------------------------------------------------------------


async def until(check: Callable[[], Awaitable[Any] | Any], *, timeout: float, what: str,
                interval: float = 0.1) -> Any:
    """Re-check `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - e.g. NATS briefly away: keep waiting
            last_error = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_error!r})" if last_error else ""))
        await asyncio.sleep(interval)


def log_has(path: Path, *needles: str) -> bool:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return False
    return any(all(n in line for n in needles) for line in text.splitlines())


def log_lines(path: Path, *needles: str) -> list[dict]:
    out = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            if all(n in line for n in needles):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
    return out


def holder_of(stack, service: str, run_id: str, needle: str) -> subprocess.Popen | None:
    """The live replica of `service` whose log says it took `run_id` (`needle` is the log event)."""
    for i, proc in enumerate(stack.procs.get(service, [])):
        if proc.poll() is None and log_has(stack.log_dir / f"{service}-{i}.log", f'"{needle}"', f'"run_id": "{run_id}"'):
            return proc
    return None


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=timeout)


# --- the event log -------------------------------------------------------------------------------


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


# --- artifacts -----------------------------------------------------------------------------------


def mp4_frame_count(path: str | Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def expected_keys(run: ev.SimRequested, prefix: str = "simreel") -> set[str]:
    """Object keys of a per-episode mp4 run with telemetry: videos, scene, report, telemetry."""
    base = f"{prefix}/{run.session}/{run.run_id}"
    keys = {f"{base}/{e:04d}/episode-{e:04d}.mp4" for e in range(run.episodes)}
    keys |= {f"{base}/all/scene.xml", f"{base}/all/report.json", f"{base}/all/telemetry.jsonl"}
    return keys


def stored_counts(events: Iterable[ev.Event]) -> collections.Counter:
    return collections.Counter(e.key for e in events if isinstance(e, ev.ArtifactStored))


def env_with(**kw: str) -> dict[str, str]:
    e = dict(os.environ)
    e.update(kw)
    return e
