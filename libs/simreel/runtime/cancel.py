"""Cancellation that nats-py can lose on Python 3.11.

nats-py waits for messages with `asyncio.wait_for`, which on Python 3.11 returns the message and drops
the cancellation when both land in the same loop turn (fixed in 3.12). A loop that reads messages
until it is cancelled then reads on, and whoever awaits its end after cancelling it waits forever:
an encode job's prefetch did that about once in thirty short clips. The task still counts the
request (`Task.cancelling()`), so a loop can notice after each read and end as it should have.
"""
from __future__ import annotations

import asyncio


def raise_if_cancel_lost() -> None:
    """Raise CancelledError if the current task was asked to cancel and is still running."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
