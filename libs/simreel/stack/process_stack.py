"""The one embedded stack of this process, shared by every recorder and wrapper in it.

A Client does not join it: the stack has no simulator (recorders need none), so a SimRequested sent
to it would never be answered; Client connects to SIMREEL_NATS_URL, a full stack.

Why one: two wrappers in a training script must not start two nats-servers and two encoders that
compete for the same cores. The stack is started by its first user, stopped when the last one lets
go (and at interpreter exit); its services run as tasks of one child process (`Stack(cohost=True)`).

Why a keeper thread: children are started with PR_SET_PDEATHSIG, which the kernel ties to the
*thread* that forked them. A recorder's thread may end while others still use the stack, so one
thread that lives as long as the process starts and stops the children.

Why stopping is not waited for: `close()` of the last user must return as soon as its last video is
stored. The keeper stops the children in the background; interpreter exit waits for that (bounded).
"""
from __future__ import annotations

import atexit
import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from simreel.runtime import log as logs
from simreel.stack.embedded import Stack

log = logs.get("simreel.process_stack")

# How long interpreter exit waits for the children to stop cleanly (they die with us anyway).
EXIT_WAIT_S = 30.0
# A child's death is noticed by users at most this long after it happened (bounded cost per frame).
DEAD_CHECK_S = 0.25


@dataclass(frozen=True)
class StackSpec:
    """What the first user asks for; later users share whatever is running."""

    out_dir: Path
    services: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict, compare=False)


class Lease:
    """One user's hold on the shared stack. `release()` once; the stack stops after the last."""

    def __init__(self, keeper: "StackKeeper", stack: Stack) -> None:
        self._keeper = keeper
        self.stack = stack
        self._released = False
        self._checked_at = 0.0
        self._dead: str | None = None

    @property
    def url(self) -> str:
        return self.stack.url

    @property
    def out_dir(self) -> Path:
        return self.stack.out_dir

    @property
    def log_dir(self) -> Path:
        return self.stack.log_dir

    def dead(self) -> str | None:
        """Why the stack cannot work any more (a child exited), or None; polled at most every
        DEAD_CHECK_S so it can be asked on every frame."""
        if self._dead is None and not self._released:
            now = time.monotonic()
            if now - self._checked_at >= DEAD_CHECK_S:
                self._checked_at = now
                self._dead = self.stack.dead()
        return self._dead

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._keeper.release()


class StackKeeper:
    """The one embedded stack of this process, shared by its users; it starts for the first and stops
    after the last. `holding` gives a keeper that already holds a running stack for `users` users."""

    def __init__(self, holding: Stack | None = None, users: int = 0) -> None:
        self._cond = threading.Condition()
        self._users = users
        self._stack: Stack | None = holding
        self._spec: StackSpec | None = None  # a start is wanted with this spec
        self._stopping = False
        self._error: BaseException | None = None
        self._exiting = False
        self._starts = 0
        self._thread: threading.Thread | None = None

    # --- users (any thread) ------------------------------------------------------------------------

    def acquire(self, spec: StackSpec, timeout: float = 60.0) -> Lease:
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._exiting:
                raise RuntimeError("the interpreter is exiting: no embedded stack can be started")
            self._ensure_thread()
            self._users += 1
            try:
                while self._stack is None or self._stopping:
                    if self._spec is None and not self._stopping:
                        self._spec, self._error = spec, None
                        self._cond.notify_all()
                    if self._error is not None and self._spec is None:
                        raise RuntimeError(f"the embedded stack did not start: {self._error}") from self._error
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"the embedded stack did not start within {timeout:.0f}s")
                    self._cond.wait(min(left, 0.5))
            except BaseException:
                self._users -= 1
                self._cond.notify_all()
                raise
            return Lease(self, self._stack)

    def release(self) -> None:
        with self._cond:
            self._users = max(0, self._users - 1)
            self._cond.notify_all()

    @property
    def starts(self) -> int:
        """How many stacks this process has started (tests count them)."""
        return self._starts

    @property
    def running(self) -> Stack | None:
        return self._stack

    def wait_stopped(self, timeout: float) -> bool:
        """Block until no stack runs (after the last user let go): True, or a TimeoutError naming
        the processes that still run."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._stack is not None or self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    stack = self._stack
                    running = ", ".join(stack.alive()) if stack is not None else "its keeper thread"
                    users = f"{self._users} user(s) still hold it" if self._users else "no user holds it"
                    raise TimeoutError(f"the embedded stack did not stop within {timeout:.0f}s ({users}); "
                                       f"still running: {running or 'nothing (stopping)'}")
                self._cond.wait(left)
            return True

    def shutdown(self, wait: float = EXIT_WAIT_S) -> None:
        with self._cond:
            self._exiting = True
            self._users = 0
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(wait)
            if thread.is_alive():
                stack = self._stack
                log.warning("embedded_stack_not_stopped", wait_s=wait,
                            running=stack.alive() if stack is not None else [])

    # --- the keeper thread -------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._main, name="simreel-stack", daemon=True)
            self._thread.start()

    def _main(self) -> None:
        while True:
            with self._cond:
                while True:
                    want_start = self._users > 0 and self._stack is None and self._spec is not None
                    want_stop = self._stack is not None and (self._users == 0 or self._exiting)
                    if want_start and not self._exiting or want_stop:
                        break
                    if self._exiting and self._stack is None:
                        return
                    self._cond.wait()
                spec = self._spec
                if want_stop:
                    self._stopping = True
                stack = self._stack
            if want_stop:
                self._stop(stack)
            else:
                self._start(spec)

    def _start(self, spec: StackSpec) -> None:
        stack = Stack(out_dir=spec.out_dir, log_dir=spec.out_dir / "logs", services=spec.services,
                      env=spec.env, cohost=True)
        try:
            stack.start()
        except BaseException as e:  # noqa: BLE001 - reported to every waiting user
            with contextlib.suppress(Exception):
                stack.cleanup()
            log.error("embedded_stack_failed", error=f"{type(e).__name__}: {e}", log_dir=str(stack.log_dir))
            with self._cond:
                self._error, self._spec = e, None
                self._cond.notify_all()
            return
        log.info("embedded_stack_started", url=stack.url, out_dir=str(spec.out_dir), services=stack.services)
        with self._cond:
            self._stack, self._spec = stack, None
            self._starts += 1
            self._cond.notify_all()

    def _stop(self, stack: Stack) -> None:
        try:
            stack.cleanup()
        except Exception as e:  # noqa: BLE001 - the keeper thread must live on to serve the next user
            log.error("embedded_stack_stop_failed", error=str(e))
        finally:
            log.info("embedded_stack_stopped", url=stack.url)
            with self._cond:
                self._stack, self._stopping = None, False
                self._cond.notify_all()


_keeper = StackKeeper()
atexit.register(_keeper.shutdown)


def acquire(out_dir: Path, *, services: Sequence[str], env: Mapping[str, str], timeout: float = 60.0) -> Lease:
    """Hold the process's embedded stack, starting it (in the keeper thread) if none runs. Blocks
    until NATS listens; call it off the producer's thread. The first user's `out_dir` and `env`
    configure the stack; later users share it as it is."""
    return _keeper.acquire(StackSpec(out_dir=Path(out_dir), services=tuple(services), env=dict(env)), timeout)


def starts() -> int:
    return _keeper.starts


def wait_stopped(timeout: float = 60.0) -> bool:
    """Wait until the stack has stopped after its last user (it stops in the background); True, or a
    TimeoutError that names what still runs."""
    return _keeper.wait_stopped(timeout)


def running() -> Stack | None:
    """The stack running now, if any (tests look here)."""
    return _keeper.running
