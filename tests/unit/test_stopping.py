"""Nothing waits forever: stopping a stack or a service has a deadline, and what did not stop is named."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from simreel.stack import process_stack, service
from simreel.stack.embedded import Stack, stop_process

# A child that ignores SIGTERM, as a service stuck in a blocking call does.
DEAF = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"]


def _deaf() -> subprocess.Popen:
    proc = subprocess.Popen(DEAF)
    time.sleep(0.3)  # let it install its handler (a SIGTERM before that would end it at once)
    return proc


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout():
    proc = _deaf()
    t0 = time.monotonic()
    stop_process(proc, timeout=0.5, what="deaf")
    assert proc.returncode == -9 and time.monotonic() - t0 < 5


def test_a_stack_that_does_not_stop_is_named_by_wait_stopped(tmp_path):
    stack = Stack(data_dir=tmp_path / "data", out_dir=tmp_path / "out")
    proc = _deaf()
    stack.procs["encoder"] = [proc]
    keeper = process_stack.StackKeeper(holding=stack, users=1)  # a stack some user never let go of
    try:
        with pytest.raises(TimeoutError, match=rf"did not stop within 0s \(1 user\(s\) still hold it\); "
                                               rf"still running: encoder-0 \(pid {proc.pid}\)"):
            keeper.wait_stopped(0.2)
    finally:
        stack.stop(timeout=0.5)
    assert proc.returncode == -9 and stack.alive() == []


async def test_a_service_that_does_not_return_after_stop_is_named(monkeypatch):
    monkeypatch.setattr(service, "STOP_MARGIN_S", 0.3)
    stop = asyncio.Event()

    async def polite(stop: asyncio.Event) -> None:
        await stop.wait()

    async def stuck(stop: asyncio.Event) -> None:
        await stop.wait()
        await asyncio.sleep(3600)  # e.g. a cleanup that hangs

    tasks = {asyncio.create_task(polite(stop)): "encoder", asyncio.create_task(stuck(stop)): "uploader"}
    asyncio.get_running_loop().call_later(0.1, stop.set)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"^uploader did not stop within 0s of the stop signal"):
        await service.run_until_stopped(tasks, stop, grace_s=0.0)
    assert time.monotonic() - t0 < 3
    await asyncio.sleep(0)
    assert all(t.done() for t in tasks)


async def test_the_first_failure_stops_the_others_and_is_raised():
    stop = asyncio.Event()

    async def broken(stop: asyncio.Event) -> None:
        raise ValueError("SIMREEL_RETENTION_POLICIES is not valid")

    async def polite(stop: asyncio.Event) -> None:
        await stop.wait()

    tasks = {asyncio.create_task(broken(stop)): "retention", asyncio.create_task(polite(stop)): "encoder"}
    with pytest.raises(ValueError, match="RETENTION_POLICIES"):
        await service.run_until_stopped(tasks, stop, grace_s=1.0)
    assert stop.is_set()
