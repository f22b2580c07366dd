"""Process entry shared by every service: logging, settings, NATS connection, signals, clean exit.

A service module only provides `async def run(bus, settings, stop)`; this module owns the lifecycle,
so SIGTERM behaves the same everywhere: stop claiming, finish or hand back in-flight work, drain.
Several services can share one process (`simreel serve encoder uploader`): each keeps its own
connection and durable consumer, exactly as if it ran alone, and one process costs one interpreter
start-up instead of several — what an embedded stack beside a training loop wants.
"""
from __future__ import annotations

import asyncio
import os
import contextlib
import importlib
import signal
import sys
from types import ModuleType
from typing import Awaitable, Callable, Sequence

from simreel.runtime import log as logs
from simreel.stack import startcheck
from simreel.transport.bus import Bus
from simreel.runtime.config import Settings

RunFn = Callable[[Bus, Settings, asyncio.Event], Awaitable[None]]

# After the stop signal a service gets its shutdown grace, the bus's hand-back (5 s) and this much
# more to return; then it is named as stuck instead of being waited on forever.
STOP_MARGIN_S = 15.0


def load(name: str) -> ModuleType:
    """A service's wiring module (`simreel.services.<name>.service`: NAME, run), by name.

    The library reaches services only here, by name, the way `python -m simreel.services.<name>`
    starts one: it never imports their code statically (an import-linter contract checks that).
    """
    return importlib.import_module(f"simreel.services.{name}.service")


async def run_until_stopped(tasks: dict[asyncio.Task, str], stop: asyncio.Event, grace_s: float) -> None:
    """Wait for the services' tasks until one fails or `stop` is set, then at most `grace_s` +
    STOP_MARGIN_S for all of them to return. The first failure is raised; tasks still running then
    are cancelled and named in a TimeoutError."""
    stopping = asyncio.ensure_future(stop.wait())
    pending, failed = set(tasks), None
    try:
        while pending and failed is None and not stop.is_set():
            done, pending = await asyncio.wait(pending | {stopping}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(stopping)
            failed = next((t.exception() for t in done
                           if t is not stopping and not t.cancelled() and t.exception() is not None), None)
    finally:
        stopping.cancel()
    stop.set()
    limit = grace_s + STOP_MARGIN_S
    if pending:
        _, stuck = await asyncio.wait(pending, timeout=limit)
        for t in pending:
            if not t.cancelled() and t.done() and t.exception() is not None and failed is None:
                failed = t.exception()
        if stuck:
            for t in stuck:
                t.cancel()
            names = ", ".join(sorted(tasks[t] for t in stuck))
            raise TimeoutError(f"{names} did not stop within {limit:.0f}s of the stop signal "
                               f"(SIMREEL_SHUTDOWN_GRACE_S + {STOP_MARGIN_S:.0f}s)") from failed
    if failed is not None:
        raise failed


async def serve(name: str, run: RunFn, settings: Settings | None = None) -> None:
    settings = settings or Settings.from_env()
    log = logs.get(name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await startcheck.services([name], settings)
    bus = await Bus.connect(settings.nats, name=f"simreel-{name}", replicas=settings.stream_replicas)
    bus.shutdown_grace_s = settings.shutdown_grace_s
    log.info("service_started", nats=settings.nats.url.split("@")[-1], staging=settings.staging)
    try:
        await run_until_stopped({asyncio.create_task(run(bus, settings, stop), name=f"service-{name}"): name},
                                stop, settings.shutdown_grace_s)
    finally:
        await bus.close()
        log.info("service_stopped")


async def serve_many(names: Sequence[str], settings: Settings | None = None) -> None:
    """Run several services as tasks of this process until SIGTERM/SIGINT. If one of them fails,
    the others are stopped too and the error propagates: a half-working process is worse than an
    exit the parent notices."""
    settings = settings or Settings.from_env()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runs = {name: load(name).run for name in names}
    grace = settings.shutdown_grace_s
    await startcheck.services(names, settings)

    async def _one(name: str, run: RunFn) -> None:
        log = logs.get(name)
        bus = await Bus.connect(settings.nats, name=f"simreel-{name}", replicas=settings.stream_replicas)
        bus.shutdown_grace_s = grace
        log.info("service_started", nats=settings.nats.url.split("@")[-1], staging=settings.staging,
                 cohosted=list(names))
        _started()
        try:
            await run(bus, settings, stop)
        finally:
            await bus.close()
            log.info("service_stopped")

    connected = 0
    nice_later = settings.nice_after_start

    def _started() -> None:
        # Start-up (imports, connecting) at normal priority, so a busy training loop beside us cannot
        # starve it; the work itself then yields the cores to that loop. Linux: threads created from
        # here on (encoder pipelines, executors) inherit the value.
        nonlocal connected
        connected += 1
        if connected == len(runs) and nice_later:
            with contextlib.suppress(OSError):
                os.nice(nice_later)

    tasks = {asyncio.create_task(_one(n, r), name=f"service-{n}"): n for n, r in runs.items()}
    try:
        await run_until_stopped(tasks, stop, grace)
    finally:
        stop.set()
        for t in tasks:
            if not t.done():
                t.cancel()


def main_many(names: Sequence[str], settings: Settings | None = None) -> None:
    logs.setup(service="+".join(names))
    try:
        asyncio.run(serve_many(names, settings))
    except KeyboardInterrupt:
        pass
    except Exception as e:  # noqa: BLE001 - one clear line, not a traceback wall, then non-zero exit
        _crashed("+".join(names), e)


def main(name: str, run: RunFn, settings: Settings | None = None) -> None:
    logs.setup(service=name)
    try:
        asyncio.run(serve(name, run, settings))
    except KeyboardInterrupt:
        pass
    except Exception as e:  # noqa: BLE001 - one clear line, not a traceback wall, then non-zero exit
        _crashed(name, e)


def _crashed(name: str, e: Exception) -> None:
    if isinstance(e, startcheck.SettingError):  # the message names the setting: nothing to add
        logs.get(name).error("settings_invalid", error=str(e))
        sys.exit(2)
    logs.get(name).error("service_crashed", error=f"{type(e).__name__}: {e}")
    sys.exit(1)
