"""The bus's cost per message on its hot paths, this checkout against another one side by side.

Three loops, each round in a fresh process on a fresh nats-server:

1. **events**: `Bus.publish` one at a time, each waiting for its PubAck (a handler's output);
2. **frames**: small FRAMES messages through `FramePublisher` (publish_async, bytes in flight capped),
   so the client's own cost per message is not hidden behind a round trip;
3. **consume**: messages claimed by `Bus.consume` (4 at a time) with a handler that produces nothing,
   each acked.

`--against PATH` runs the same loops with the `simreel` of another checkout (its libs/ first on
PYTHONPATH; e.g. `git archive HEAD~1 libs | tar -x -C /tmp/base`), alternating checkouts (and which
goes first) round by round so both see the same machine, and reports medians and the ratio of rates
(this checkout / the other) for rates and for the client's CPU time per message, which the load
of other processes on the machine disturbs much less than the rates.

    python -m benchmarks.bench_bus [--against PATH] [--rounds 5] [--events 2000] [--frames 20000]
                                   [--messages 2000] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RATES = ("events_s", "frames_s", "consume_s")  # messages per second (wall clock)
COSTS = ("events_cpu_us", "frames_cpu_us", "consume_cpu_us")  # the client process's CPU µs per message
LOOPS = RATES + COSTS


async def _measure(url: str, n_events: int, n_frames: int, n_messages: int) -> dict:
    """Runs with whichever simreel is first on the path (the checkout being measured)."""
    import simreel
    from simreel.contract import events as ev
    from simreel.runtime.config import NatsSettings
    from simreel.transport.bus import Bus, FramePublisher

    bus = await Bus.connect(NatsSettings(url=url), name="bench-bus")
    try:
        failures = [ev.SimFailed.of(f"bench-e{i}", 1, "bad_request", "bench") for i in range(n_events)]
        t0, c0 = time.perf_counter(), time.process_time()
        for e in failures:
            await bus.publish(e)
        events_s, events_cpu = n_events / (time.perf_counter() - t0), (time.process_time() - c0) / n_events

        batches = [ev.FrameBatch(run_id="bench-f", attempt=1, episode=0, seq=i, first_index=i, count=1, width=4,
                                 height=4, times=[i / 30], frames=bytes(48)) for i in range(n_frames)]
        frames = FramePublisher(bus, 8 * 1024 * 1024)
        t0, c0 = time.perf_counter(), time.process_time()
        for b in batches:
            await frames.publish(b)
        await frames.flush()
        frames_s, frames_cpu = n_frames / (time.perf_counter() - t0), (time.process_time() - c0) / n_frames

        for i in range(n_messages):
            await bus.publish(ev.SimRequested(run_id=f"bench-c{i}", scene="cartpole").with_request_id())
        handled, stop = 0, asyncio.Event()

        async def on_request(req, delivery) -> list:
            nonlocal handled
            handled += 1
            if handled == n_messages:
                stop.set()
            return []

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.wait_for(bus.consume("simulator", {ev.SimRequested: on_request}, stop=stop, concurrency=4,
                                           grace_s=5.0), timeout=600)
        consume_s, consume_cpu = n_messages / (time.perf_counter() - t0), (time.process_time() - c0) / n_messages
    finally:
        await bus.close()
    return {"simreel": str(Path(simreel.__file__).parent), "events_s": events_s, "frames_s": frames_s,
            "consume_s": consume_s, "events_cpu_us": events_cpu * 1e6, "frames_cpu_us": frames_cpu * 1e6,
            "consume_cpu_us": consume_cpu * 1e6}


def _round(checkout: Path, args: argparse.Namespace) -> dict:
    """One measurement in a fresh process importing `checkout`'s simreel, on a fresh nats-server."""
    from simreel.stack.embedded import NatsServer

    with tempfile.TemporaryDirectory() as d:
        server = NatsServer(store_dir=Path(d) / "js").start()
        try:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout / "libs"), str(ROOT)])}
            done = subprocess.run([sys.executable, "-m", "benchmarks.bench_bus", "--child", server.url,
                                   "--events", str(args.events), "--frames", str(args.frames),
                                   "--messages", str(args.messages)],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=True)
        finally:
            server.stop()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--against", type=Path, help="another checkout to measure side by side")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--frames", type=int, default=20000)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--json")
    p.add_argument("--child", metavar="NATS_URL", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(_measure(args.child, args.events, args.frames, args.messages))))
        return 0

    from benchmarks.report import emit, machine

    checkouts = {"this": ROOT} | ({"other": args.against.resolve()} if args.against else {})
    rounds: dict[str, list[dict]] = {name: [] for name in checkouts}
    load = [os.getloadavg()[0]]
    for i in range(args.rounds):
        order = list(checkouts.items())
        for name, path in order[::-1] if i % 2 else order:  # neither checkout always goes first
            rounds[name].append(_round(path, args))
    load.append(os.getloadavg()[0])
    out: dict = {**machine(), "load_1min_start_end": load, "rounds": args.rounds,
                 "counts": {"events": args.events, "frames": args.frames, "messages": args.messages}}
    for name, rows in rounds.items():
        out[name] = {"simreel": rows[0]["simreel"],
                     **{k: round(statistics.median(r[k] for r in rows), 1) for k in LOOPS},
                     "all": [{k: round(r[k], 1) for k in LOOPS} for r in rows]}
    if args.against:
        # Each round's ratio, then their median: both checkouts of a round ran back to back.
        out["ratio_this_over_other"] = {
            k: round(statistics.median(a[k] / b[k] for a, b in zip(rounds["this"], rounds["other"])), 3)
            for k in LOOPS}
    return emit(out, args.json)


if __name__ == "__main__":
    sys.exit(main())
