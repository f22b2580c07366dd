"""Richer telemetry past its size limit: the simulator refuses the request with the field and the sizes,
before anything is rendered (real NATS; the handler's answer is checked as events)."""
from __future__ import annotations

import pytest

from simreel.contract import events as ev
from simreel.transport.bus import Bus, Delivery, handler_events
from simreel.runtime.config import Limits, NatsSettings, Settings
from simreel.services.simulator.handlers import Simulator

pytestmark = pytest.mark.integration


async def test_too_many_state_values_per_frame_fail_with_the_field_and_the_limit(nats_server, tmp_path):
    bus = await Bus.connect(NatsSettings(url=nats_server.url))
    try:
        settings = Settings(limits=Limits(max_telemetry_values=3))
        sim = Simulator(bus, settings, staging=None)
        delivery = Delivery(subject="simreel.evt.sim.requested", attempt=1, stream_seq=1)
        asked = ev.SimRequested(run_id="tel-big", scene="cartpole", duration_s=0.2,
                                outputs=ev.OutputSpec(telemetry_fields=["qpos", "qvel"]))
        (failed,) = [e async for e in handler_events(sim.on_sim_requested, asked, delivery)]
        assert isinstance(failed, ev.SimFailed) and failed.code == "limit_exceeded"
        assert failed.field == "outputs.telemetry_fields"
        assert "4 numbers per frame (qpos 2, qvel 2); at most 3" in failed.message
        gym = ev.SimRequested(run_id="tel-gym", scene="gymnasium:InvertedPendulum-v5", max_steps=2,
                              outputs=ev.OutputSpec(telemetry_fields=["qpos"]))
        (failed,) = [e async for e in handler_events(sim.on_sim_requested, gym, delivery)]
        assert failed.code == "bad_request" and "'qpos' is not recorded" in failed.message
    finally:
        await bus.close()
