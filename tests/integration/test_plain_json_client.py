"""Another system with nothing but nats-py and JSON: a request that does not decode is answered on the
run's own subjects, with the decoder's field path and limit (not only dead-lettered as `unknown`)."""
from __future__ import annotations

import asyncio
import json

import nats
import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("run_id,body,field,says", [
    ("plain-width", {"render": {"width": 100000}}, "render.width", "<= 4096"),
    ("plain-episodes", {"episodes": "three"}, "episodes", "got `str`"),
])
async def test_a_bad_json_request_hears_back_on_its_run(stack, run_id, body, field, says):
    nc = await nats.connect(stack.url)
    try:
        heard: asyncio.Queue = asyncio.Queue()
        sub = await nc.subscribe(f"simreel.evt.*.*.{run_id}", cb=lambda m: heard.put_nowait(json.loads(m.data)))
        js = nc.jetstream()
        await js.publish("simreel.evt.sim.requested",
                         json.dumps({"type": "SimRequested", "run_id": run_id, "scene": "cartpole", **body}).encode())
        event = await asyncio.wait_for(heard.get(), 60)
        await sub.unsubscribe()
    finally:
        await nc.close()
    assert event["type"] == "SimFailed" and event["run_id"] == run_id and event["code"] == "bad_request"
    assert event["field"] == field and says in event["message"]
