"""Another system with nothing but nats-py and JSON: a request that does not decode is answered on the
run's own subjects, with the decoder's field path and limit (not only dead-lettered as `unknown`)."""
from __future__ import annotations

import json

import nats
import pytest

from tests.support.runs import events_stream_exists

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("run_id,body,field,says", [
    ("plain-width", {"render": {"width": 100000}}, "render.width", "<= 4096"),
    ("plain-episodes", {"episodes": "three"}, "episodes", "got `str`"),
])
async def test_a_bad_json_request_hears_back_on_its_run(stack, run_id, body, field, says):
    nc = await nats.connect(stack.url)
    try:
        sub = await nc.subscribe(f"simreel.evt.*.*.{run_id}")  # what a plain requester listens on
        js = nc.jetstream()
        await events_stream_exists(js)  # the stack's services create it as they start
        await js.publish("simreel.evt.sim.requested",
                         json.dumps({"type": "SimRequested", "run_id": run_id, "scene": "cartpole", **body}).encode())
        event = json.loads((await sub.next_msg(timeout=60)).data)
        await sub.unsubscribe()
    finally:
        await nc.close()
    assert event["type"] == "SimFailed" and event["run_id"] == run_id and event["code"] == "bad_request"
    assert event["field"] == field and says in event["message"]
