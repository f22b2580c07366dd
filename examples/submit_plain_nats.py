"""Submit a simulation and collect its artifact URLs with nothing but nats-py and json.

No simreel import: this is how another system, in any language with a NATS client, talks to
simreel (the contract is docs/events.md).

    python examples/submit_plain_nats.py --nats nats://127.0.0.1:4222 --scene cartpole --duration 3
"""
from __future__ import annotations

import argparse
import asyncio
import json
import uuid

import nats

FAILURES = ("SimFailed", "EncodeFailed", "StoreFailed", "DeadLettered")


async def main(a: argparse.Namespace) -> int:
    nc = await nats.connect(a.nats)
    js = nc.jetstream()
    run = a.run_id or f"plain-{uuid.uuid4().hex[:10]}"
    # Subscribe before publishing, from the start of the run's story, so no event can be missed.
    sub = await js.subscribe(f"simreel.evt.*.*.{run}", ordered_consumer=True)
    request = {"type": "SimRequested", "run_id": run, "event_id": f"req-{run}", "scene": a.scene,
               "episodes": a.episodes, "duration_s": a.duration, "policy": a.policy,
               "render": {"width": a.width, "height": a.height}}
    # Nats-Msg-Id = event_id: a retried publish is dropped by JetStream instead of starting a second run.
    await js.publish("simreel.evt.sim.requested", json.dumps(request).encode(),
                     headers={"Nats-Msg-Id": request["event_id"]})
    print(f"submitted {run}")
    expected, stored, code = None, set(), 0
    try:
        while expected is None or len(stored) < expected:
            event = json.loads((await sub.next_msg(timeout=a.timeout)).data)
            kind = event["type"]
            if kind in FAILURES:
                print(f"{kind}: {event.get('message') or event.get('reason')}")
                code = 1
                break
            if kind == "VideoAvailable":
                print(f"encoded episode {event['episode']}: {event['frames']} frames")
            elif kind == "ArtifactStored":
                stored.add(event["key"])
                print(f"{event['kind']:<9} {event['url']}")
            elif kind == "SimCompleted":
                expected = event["expected_artifacts"]
    except nats.errors.TimeoutError:
        print(f"no event for {a.timeout:.0f}s; is the stack running at {a.nats}?")
        code = 2
    finally:
        await nc.drain()
    return code


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nats", default="nats://127.0.0.1:4222")
    p.add_argument("--scene", default="cartpole", help="builtin name, or gymnasium:<EnvId> where supported")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--policy", default="random")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--run-id", default=None)
    p.add_argument("--timeout", type=float, default=300.0)
    raise SystemExit(asyncio.run(main(p.parse_args())))
