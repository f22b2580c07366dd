"""The bus itself fails: the single nats-server restarts mid-run, or one node of a 3-node JetStream
cluster (R3 streams) is killed mid-run. Services reconnect on their own and the run completes."""
from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.transport.bus import Bus, connect
from simreel.runtime.config import NatsSettings
from simreel.stack.embedded import wait_port, free_port, nats_server_binary, stop_process

from tests.support.artifacts import expected_keys, mp4_frame_count
from tests.support.eventlog import Tap, frames_in_stream, replay, stored_counts, submit, wait_result_alive
from tests.support.runs import frames_of, request
from tests.support.waits import until

pytestmark = pytest.mark.integration


def _check_complete(result, req, events) -> None:
    assert result.ok, result.error
    for a in result.artifacts:
        if a.kind == "video":
            assert mp4_frame_count(a.path) == frames_of(req)
    counts = stored_counts(e for e in events if e.run_id == req.run_id)
    assert set(counts) == expected_keys(req) and set(counts.values()) == {1}, counts


async def test_nats_restart_mid_run(make_stack):
    stack = make_stack()
    nats_settings = NatsSettings(url=stack.url)
    req = request("nats-restart", duration_s=30.0)
    async with Tap(nats_settings) as tap:
        await submit(nats_settings, req)
        await tap.wait(lambda evs: tap.of(req.run_id, ev.SimStarted), timeout=60, what="SimStarted")
        await until(lambda: frames_in_stream(tap.nc.jetstream(), req.run_id), timeout=30, what="first frames")
        assert not tap.of(req.run_id, ev.EpisodeEnded), "the restart came too late"
    port, store = stack.nats.port, stack.nats.store_dir
    stack.nats.stop()
    stack.nats.start()
    assert (stack.nats.port, stack.nats.store_dir) == (port, store)  # same address, same JetStream state

    result = await wait_result_alive(nats_settings, req.run_id, stack, timeout=150)
    events = await replay(nats_settings)
    _check_complete(result, req, events)
    for name, procs in stack.procs.items():
        assert all(p.poll() is None for p in procs), f"{name} died instead of reconnecting"
    assert any("nats_reconnected" in (stack.log_dir / f"{n}-0.log").read_text() for n in stack.procs)


async def test_service_start_waits_for_jetstream(nats_server):
    """A service that starts while JetStream cannot answer (a cluster electing a new stream leader
    after a node loss; here the one server is paused) waits for it instead of dying at start: a dead
    encoder left a cluster run stalled in "storing" for good."""
    bus = Bus(await connect(NatsSettings(url=nats_server.url), name="reliability-starting"))
    try:
        nats_server.proc.send_signal(signal.SIGSTOP)
        try:
            starting = asyncio.create_task(bus.ensure_streams())
            await until(lambda: starting.done() or bus.retries["ensure_streams"] > 0,
                        timeout=60, what="a JetStream request to time out")
            assert not starting.done(), f"gave up while JetStream was away: {starting.exception()!r}"
        finally:
            nats_server.proc.send_signal(signal.SIGCONT)
        await asyncio.wait_for(starting, timeout=60)
        for name in (subjects.EVENTS_STREAM, subjects.FRAMES_STREAM):
            assert (await bus.js.stream_info(name)).config.name == name
    finally:
        await bus.close()


def test_retention_index_waits_for_jetstream(nats_server):
    """Retention rebuilds its index from the log before it consumes: started while JetStream cannot
    answer, it waits instead of leaving its index follower dead and itself waiting forever.

    It runs in a fresh interpreter, as the retention service does: in the suite's own process, after
    the in-process recorder tests, the follower's first JetStream request did not time out within
    60 s (it does at once in a fresh process); that is test-process state, not the service's."""
    import sys

    proc = subprocess.run([sys.executable, "-m", "tests.reliability.retention_away", nats_server.url,
                           str(nats_server.proc.pid)], capture_output=True, text=True, timeout=240,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "index holds the artifact" in proc.stdout


DEPLOY_CLUSTER = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "cluster"


class Cluster:
    """Three nats-server processes forming one JetStream cluster on loopback (duck-types NatsServer
    for Stack: `url`, `launch()`, `wait_ready()`, `start()`, `stop()`, `log_file`)."""

    def __init__(self, base: Path, size: int = 3) -> None:
        self.base = base
        self.size = size
        self._pick_ports()
        self.procs: list[subprocess.Popen | None] = [None] * size
        self.log_file: Path | None = None

    def _pick_ports(self) -> None:
        # free_port() can hand out the same port twice (it is free again once probed): all distinct.
        picked: list[int] = []
        while len(picked) < 3 * self.size:
            if (p := free_port()) not in picked:
                picked.append(p)
        n = self.size
        self.ports, self.cluster_ports, self.http_ports = picked[:n], picked[n:2 * n], picked[2 * n:]

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.ports)

    def name(self, i: int) -> str:
        return f"simreel-n{i + 1}"  # server_name in deploy/nats/cluster/node<N>.conf

    def start_node(self, i: int) -> None:
        """The shipped deploy/nats/cluster/node<N>.conf, with this test's free ports given as flags
        (flags win over the file) and the base dir as working directory (store_dir is relative)."""
        routes = ",".join(f"nats-route://127.0.0.1:{p}" for p in self.cluster_ports)
        conf = DEPLOY_CLUSTER / f"node{i + 1}.conf"
        cmd = [nats_server_binary(), "-c", str(conf), "-p", str(self.ports[i]), "-m", str(self.http_ports[i]),
               "--cluster_listen", f"nats://127.0.0.1:{self.cluster_ports[i]}", "--routes", routes]
        out = open(self.base / f"{self.name(i)}.log", "ab")
        self.procs[i] = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, cwd=self.base)
        wait_port("127.0.0.1", self.ports[i], self.procs[i], 15, f"nats-server {self.name(i)}")

    def start(self) -> "Cluster":
        self.base.mkdir(parents=True, exist_ok=True)
        first = all(p is None for p in self.procs)
        for attempt in range(3):
            try:
                for i, p in enumerate(self.procs):
                    if p is None or p.poll() is not None:
                        self.start_node(i)
                return self
            except RuntimeError:
                # A port picked as free can be taken before the node binds it (another process, or an
                # outgoing connection's ephemeral port): on the first start, pick new ports and retry.
                in_use = any("address already in use" in f.read_text(errors="replace")
                             for f in self.base.glob("simreel-n*.log"))
                if not (first and in_use) or attempt == 2:
                    if first:
                        self.stop()  # no node of a cluster that never formed outlives the test
                    raise
                self.stop()
                for f in self.base.glob("simreel-n*.log"):
                    f.unlink()
                shutil.rmtree(self.base / "nats-cluster", ignore_errors=True)  # a fresh cluster, as the first time
                self._pick_ports()
        return self

    def launch(self) -> "Cluster":  # Stack.start launches the server, starts the services, then waits
        return self.start()

    def wait_ready(self, timeout: float = 15.0) -> "Cluster":
        return self  # start() returns once every node listens

    def healthy(self) -> bool:
        """Every node reports JetStream healthy (meta leader elected, assets current)."""
        for i, p in enumerate(self.procs):
            if p is None or p.poll() is not None:
                continue
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_ports[i]}/healthz", timeout=1) as r:
                    if json.load(r).get("status") != "ok":
                        return False
            except OSError:
                return False
        return True

    def kill(self, i: int) -> None:
        stop_process(self.procs[i], sig=signal.SIGKILL)
        self.procs[i] = None

    def stop(self) -> None:
        for i, p in enumerate(self.procs):
            stop_process(p)
            self.procs[i] = None


async def _stream_leader(settings: NatsSettings, stream: str) -> str:
    nc = await connect(settings, name="reliability-probe")
    try:
        info = await until(lambda: nc.jetstream().stream_info(stream), timeout=60, what=f"{stream}'s info")
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2, info.cluster
        return info.cluster.leader
    finally:
        await nc.close()


async def test_cluster_node_killed_mid_run(make_stack, tmp_path):
    cluster = Cluster(tmp_path / "cluster").start()
    try:
        await until(cluster.healthy, timeout=60, what="a healthy 3-node JetStream cluster")
        settings = NatsSettings(url=cluster.url)
        # R3 streams first (services would create them too; here the test checks the placement).
        nc = await connect(settings, name="reliability-setup")
        await until(lambda: _ensure(nc), timeout=60, what="R3 streams created")
        await nc.close()

        stack = make_stack(env={"SIMREEL_STREAM_REPLICAS": "3"}, start=False)
        stack.nats = cluster  # the services get the comma-separated URL of all three nodes
        stack.start()
        req = request("cluster-kill", duration_s=30.0)
        async with Tap(settings) as tap:
            await submit(settings, req)
            await tap.wait(lambda evs: tap.of(req.run_id, ev.SimStarted), timeout=90, what="SimStarted")
            await until(lambda: frames_in_stream(tap.nc.jetstream(), req.run_id), timeout=30, what="first frames")
            assert not tap.of(req.run_id, ev.EpisodeEnded), "the kill came too late"
        leader = await _stream_leader(settings, subjects.EVENTS_STREAM)
        victim = [cluster.name(i) for i in range(3)].index(leader)
        cluster.kill(victim)  # the EVENTS leader: a new one must be elected mid-run

        result = await wait_result_alive(settings, req.run_id, stack, timeout=150)
        events = await replay(settings)
        _check_complete(result, req, events)
        assert await _stream_leader(settings, subjects.EVENTS_STREAM) != leader
        for name, procs in stack.procs.items():
            assert all(p.poll() is None for p in procs), f"{name} died"
    finally:
        cluster.stop()


async def _ensure(nc) -> bool:
    bus = Bus(nc, replicas=3)
    await bus.ensure_streams()
    return True
