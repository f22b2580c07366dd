"""Waiting on a condition with a deadline: every wait in the suite ends, and says what it waited for."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable


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
