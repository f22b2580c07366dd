"""Several hosts on one machine: does the frame transport survive a real network link?

NATS, the simulators, the encoder, the uploader and the client each run in their own Linux network
namespace ("host"), every host joined to the NATS host by its own veth link, and the simulators'
link limited with `tc` (token bucket, default 200 Mbit/s — below one raw 640×480 @ 30 fps stream,
221 Mbit/s). For 1 and 4 concurrent simulators (one simulator host, one link), raw and zstd frames,
with and without the limit, it reports: frames per second the simulators achieved, bytes that
crossed the simulators' link, and time from submit to the last ArtifactStored.

What to read: with the limit, compressed frames keep the simulators at their unthrottled rate, and
raw frames are link-bound. All hosts share this machine's cores, so the figures are ratios within
one round, not absolute speeds.

This is a benchmark, not a test. It needs root (CAP_NET_ADMIN) and iproute2 (`ip`, `tc`). It creates
its own namespaces (unique names, `sr<tag>-…`), sends traffic only inside them (both ends of every
veth lie in namespaces it created; none touch the host's interfaces), and removes them on exit, on
Ctrl-C and on SIGTERM. Where namespaces are not allowed it says so and exits with status 3.

    python -m benchmarks.bench_netns [--rate 200mbit] [--sims 1,4] [--duration 10] [--rounds 1] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import emit, machine

os.environ.setdefault("MUJOCO_GL", "egl")

HOSTS = ("nats", "sims", "enc", "upl", "client")
SYSTEM_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")  # iproute2 is a system package, not a wheel


def _system_tool(name: str) -> str | None:
    for d in SYSTEM_DIRS:
        path = Path(d) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


IP, TC = _system_tool("ip") or "ip", _system_tool("tc") or "tc"
NATS_PORT = 4222
SKIPPED = 3


class Namespaces:
    """The namespaces, links and processes this benchmark made, and nothing else, removed at exit."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(2)
        self.names: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.links: dict[str, tuple[str, str]] = {}  # host -> (its interface, the NATS host's address)
        atexit.register(self.cleanup)

    def ns(self, host: str) -> str:
        return f"sr{self.tag}-{host}"

    def create(self) -> None:
        for host in HOSTS:
            name = self.ns(host)
            _ip("netns", "add", name)
            self.names.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        for k, host in enumerate(h for h in HOSTS if h != "nats"):
            mine, hub = f"sr{self.tag}{host[:3]}", f"sr{self.tag}{host[:3]}h"
            # Created inside the NATS namespace, then one end moved: neither end ever sits in the host's.
            _ip("-n", self.ns("nats"), "link", "add", hub, "type", "veth", "peer", "name", mine,
                "netns", self.ns(host))
            subnet = f"10.213.{k + 1}"
            _ip("-n", self.ns("nats"), "addr", "add", f"{subnet}.1/30", "dev", hub)
            _ip("-n", self.ns(host), "addr", "add", f"{subnet}.2/30", "dev", mine)
            _ip("-n", self.ns("nats"), "link", "set", hub, "up")
            _ip("-n", self.ns(host), "link", "set", mine, "up")
            self.links[host] = (mine, f"{subnet}.1")

    def url(self, host: str) -> str:
        return f"nats://{self.links[host][1]}:{NATS_PORT}"

    def start(self, host: str, cmd: list[str], env: dict[str, str], log: Path, nice: int = 0) -> subprocess.Popen:
        full = [IP, "netns", "exec", self.ns(host), *(["nice", "-n", str(nice)] if nice else []), *cmd]
        p = subprocess.Popen(full, env=env, stdin=subprocess.DEVNULL, stdout=open(log, "ab"),
                             stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def stop(self, procs: list[subprocess.Popen]) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p in self.procs:
                self.procs.remove(p)

    def limit(self, host: str, rate: str | None) -> None:
        dev = self.links[host][0]
        subprocess.run([IP, "netns", "exec", self.ns(host), TC, "qdisc", "del", "dev", dev, "root"],
                       stderr=subprocess.DEVNULL, check=False)
        if rate:
            subprocess.run([IP, "netns", "exec", self.ns(host), TC, "qdisc", "add", "dev", dev, "root", "tbf",
                            "rate", rate, "burst", "256kb", "latency", "50ms"], check=True)

    def tx_bytes(self, host: str) -> int:
        out = subprocess.run([IP, "-n", self.ns(host), "-s", "-j", "link", "show", "dev", self.links[host][0]],
                             capture_output=True, text=True, check=True).stdout
        return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])

    def cleanup(self) -> None:
        self.stop(list(self.procs))
        for name in reversed(self.names):
            subprocess.run([IP, "netns", "del", name], stderr=subprocess.DEVNULL, check=False)
        self.names.clear()


def _ip(*args: str) -> None:
    subprocess.run([IP, *args], check=True, capture_output=True, text=True)


def namespaces_unavailable() -> str | None:
    """Why this machine cannot run the benchmark, or None."""
    if _system_tool("ip") is None or _system_tool("tc") is None:
        return "iproute2 is not installed (`ip`, `tc`): apt-get install iproute2"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    probe = f"srprobe-{secrets.token_hex(3)}"
    r = subprocess.run([IP, "netns", "add", probe], capture_output=True, text=True)
    if r.returncode:
        return f"`ip netns add` is refused here: {r.stderr.strip()}"
    subprocess.run([IP, "netns", "del", probe], capture_output=True)
    return None


# --- the client host: submits the runs and times them --------------------------------------------


async def _drive(url: str, runs: int, duration: float, tag: str) -> dict:
    from simreel.contract import events as ev
    from simreel.bench.pipeline import until_pulling
    from simreel.client import Client
    from simreel.runtime.config import NatsSettings

    client = await Client.connect(NatsSettings(url=url))
    try:
        await until_pulling(client.bus, "simulator", runs, timeout=120)
        req = dict(scene="cartpole", duration_s=duration, policy="random",
                   render=ev.RenderSpec(width=640, height=480, fps=30, quality="fast"),
                   outputs=ev.OutputSpec(formats=["mp4"], telemetry=False))
        seen: dict[str, dict] = {}

        async def one(i: int) -> None:
            rid = f"{tag}-{i}"
            t = seen[rid] = {"submitted": time.time()}

            def on_event(e, state) -> None:
                if isinstance(e, ev.SimStarted):
                    t["started"] = e.ts
                elif isinstance(e, ev.EpisodeEnded):
                    t["ended"], t["frames"] = e.ts, e.frames
                elif isinstance(e, ev.SimCompleted):
                    t["published"] = e.report.get("timings", {}).get("frames_published_bytes")
                elif isinstance(e, ev.ArtifactStored):
                    t["stored"] = time.time()

            res = await client.run(ev.SimRequested(run_id=rid, **req), timeout=1800, on_event=on_event)
            t["status"] = res.status

        await asyncio.gather(*(one(i) for i in range(runs)))
    finally:
        await client.close()
    per_run = [{"fps": t["frames"] / (t["ended"] - t["started"]), "to_stored_s": t["stored"] - t["submitted"],
                "frames": t["frames"], "published_bytes": t.get("published"), "status": t["status"]}
               for t in seen.values()]
    return {"runs": per_run, "fps_total": sum(r["fps"] for r in per_run),
            "to_last_stored_s": max(r["to_stored_s"] for r in per_run),
            "frames": sum(r["frames"] for r in per_run),
            "ok": all(r["status"] == "completed" for r in per_run)}


# --- orchestration ---------------------------------------------------------------------------------


def _service_env(base: dict[str, str], url: str, work: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith(("SIMREEL_", "NATS_"))}
    env.update(SIMREEL_NATS_URL=url, SIMREEL_STAGING="objectstore", SIMREEL_STORE="local",
               SIMREEL_STORE_DIR=str(work / "out"), SIMREEL_LOG_LEVEL="warning", MUJOCO_GL=base.get("MUJOCO_GL", "egl"))
    env.update(extra)
    return env


def _config(net: Namespaces, work: Path, env: dict[str, str], runs: int, duration: float, label: str) -> dict:
    before = net.tx_bytes("sims")
    out = subprocess.run([IP, "netns", "exec", net.ns("client"), sys.executable, "-m", "benchmarks.bench_netns",
                          "--drive", net.url("client"), "--runs", str(runs), "--duration", str(duration),
                          "--tag", f"{label}-{secrets.token_hex(2)}"],
                         env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if out.returncode:
        raise RuntimeError(f"client failed ({label}): {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["link_bytes"] = net.tx_bytes("sims") - before
    result["link_bytes_per_frame"] = result["link_bytes"] / max(1, result["frames"])
    return result


def orchestrate(a) -> dict:
    from simreel.stack.binaries import find

    net = Namespaces()

    def _term(signum, frame):  # SIGTERM: leave through the finally below (and atexit)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _term)
    work = Path(tempfile.mkdtemp(prefix="simreel-netns-"))
    results: list[dict] = []
    try:
        net.create()
        base = dict(os.environ)
        nats_log = work / "nats.log"
        net.start("nats", [find("nats-server"), "-js", "-a", "0.0.0.0", "-p", str(NATS_PORT), "-sd",
                           str(work / "js")], base, nats_log)
        enc = net.start("enc", [sys.executable, "-m", "simreel.services.encoder"],
                        _service_env(base, net.url("enc"), work, SIMREEL_CONCURRENCY="4"), work / "encoder.log", nice=10)
        upl = net.start("upl", [sys.executable, "-m", "simreel.services.uploader"],
                        _service_env(base, net.url("upl"), work), work / "uploader.log", nice=10)
        sims_n = max(a.sims)
        for rnd in range(a.rounds):
            for compression in a.compression:
                sims = [net.start("sims", [sys.executable, "-m", "simreel.services.simulator"],
                                  _service_env(base, net.url("sims"), work, SIMREEL_FRAME_COMPRESSION=compression,
                                               SIMREEL_CONCURRENCY="1"), work / f"simulator-{i}.log")
                        for i in range(sims_n)]
                client_env = _service_env(base, net.url("client"), work)
                _config(net, work, client_env, 1, 1.0, "warmup")  # imports, GL and stream set-up not timed
                for rate in (None, a.rate):
                    net.limit("sims", rate)
                    for n in a.sims:
                        r = _config(net, work, client_env, n, a.duration, f"{compression}-{n}")
                        r.update(round=rnd + 1, compression=compression, limit=rate or "none", simulators=n)
                        results.append(r)
                        print(f"round {rnd + 1}  {compression:4s}  link {rate or 'unlimited':>9s}  {n} sim(s): "
                              f"{r['fps_total']:6.1f} fps in all, {r['link_bytes_per_frame'] / 1e3:7.1f} kB/frame on "
                              f"the link ({r['link_bytes'] / 1e6:7.1f} MB), last ArtifactStored after "
                              f"{r['to_last_stored_s']:5.1f} s{'' if r['ok'] else '  (RUN FAILED)'}", file=sys.stderr)
                net.limit("sims", None)
                net.stop(sims)
        net.stop([enc, upl])
    except BaseException:
        for log in sorted(work.glob("*.log")):
            print(f"--- {log.name} (last lines)\n{log.read_text(errors='replace')[-1500:]}", file=sys.stderr)
        raise
    finally:
        net.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return {"rows": results}


def summarize(rows: list[dict]) -> list[dict]:
    """Per round, compression and simulator count: throttled over unthrottled frame rate."""
    out = []
    for r in rows:
        if r["limit"] == "none":
            continue
        free = next(x for x in rows if x["round"] == r["round"] and x["compression"] == r["compression"]
                    and x["simulators"] == r["simulators"] and x["limit"] == "none")
        out.append({"round": r["round"], "compression": r["compression"], "simulators": r["simulators"],
                    "fps_unlimited": free["fps_total"], "fps_limited": r["fps_total"],
                    "kept": r["fps_total"] / free["fps_total"],
                    "link_bytes_per_frame_limited": r["link_bytes_per_frame"],
                    "to_stored_unlimited_s": free["to_last_stored_s"], "to_stored_limited_s": r["to_last_stored_s"]})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", default="200mbit", help="tc rate of the simulators' link (tc syntax)")
    p.add_argument("--sims", default="1,4", help="concurrent simulators to try, comma-separated")
    p.add_argument("--compression", default="zstd,none")
    p.add_argument("--duration", type=float, default=10.0, help="simulated seconds per run (30 fps, 640×480, fast)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--drive", default=None, help=argparse.SUPPRESS)  # the client host's half
    p.add_argument("--runs", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--tag", default="netns", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.drive:
        print(json.dumps(asyncio.run(_drive(a.drive, a.runs, a.duration, a.tag))))
        return 0
    a.sims = [int(x) for x in a.sims.split(",")]
    a.compression = [c.strip() for c in a.compression.split(",") if c.strip()]
    why = namespaces_unavailable()
    if why:
        print(f"bench_netns: cannot run here: {why}", file=sys.stderr)
        if a.json:
            Path(a.json).write_text(json.dumps({"skipped": why}))
        return SKIPPED
    out = orchestrate(a)
    out.update(**machine(), rate=a.rate, duration_s=a.duration, summary=summarize(out["rows"]))
    return emit(out, a.json)


if __name__ == "__main__":
    sys.exit(main())
