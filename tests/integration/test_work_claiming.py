"""The work-claiming loop on its own, on a real nats-server: what becomes of one claimed message
(its handler's events published, then acked; bad input dead-lettered at once; a failing handler
retried, then dead-lettered) without a Bus around it."""
from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.runtime.config import NatsSettings
from simreel.transport.connection import connect
from simreel.transport.event_log import follow, replay
from simreel.transport.handler import Delivery, PermanentError
from simreel.transport.publishing import publish_event
from simreel.transport.stream_setup import ensure_streams
from simreel.transport.work_claiming import WorkClaimer

pytestmark = pytest.mark.integration

SERVICE = "simulator"  # claims SimRequested


def _request(run_id: str) -> ev.SimRequested:
    return ev.SimRequested(run_id=run_id, scene="cartpole", episodes=1, duration_s=0.2).with_request_id()


@pytest.fixture
async def js(nats_server):
    nc = await connect(NatsSettings(url=nats_server.url), name="work-claiming-test")
    js = nc.jetstream(timeout=10)
    await ensure_streams(js)
    try:
        yield js
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def claiming(js, handlers, **options):
    stop = asyncio.Event()
    claimer = WorkClaimer(js, SERVICE, handlers, publish=lambda e: publish_event(js, e), **options)
    task = asyncio.create_task(claimer.run(stop, concurrency=2, grace_s=1.0))
    try:
        yield claimer
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _first(js, subject: str, timeout: float = 30.0) -> ev.Event:
    async def first() -> ev.Event:
        async for e in follow(js, subject):
            return e
        raise AssertionError("follow ended")

    return await asyncio.wait_for(first(), timeout)


async def _all_settled(js, timeout: float = 10.0) -> None:
    """Wait until the service's consumer has nothing pending and nothing awaiting an ack."""
    deadline = time.monotonic() + timeout
    while True:
        info = await js.consumer_info(subjects.EVENTS_STREAM, SERVICE)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        assert time.monotonic() < deadline, f"still {info.num_pending} pending, {info.num_ack_pending} unacked"
        await asyncio.sleep(0.05)


async def test_a_handlers_events_are_published_and_its_message_acked(js):
    seen: list[Delivery] = []

    async def on_request(req: ev.SimRequested, delivery: Delivery) -> list[ev.Event]:
        seen.append(delivery)
        return [ev.SimFailed.of(req.run_id, 1, "bad_request", "refused by the test handler")]

    async with claiming(js, {ev.SimRequested: on_request}):
        await publish_event(js, _request("claim-ok"))
        failed = await _first(js, subjects.of_run(ev.SimFailed, "claim-ok"))
        await _all_settled(js)
    assert isinstance(failed, ev.SimFailed) and failed.message == "refused by the test handler"
    assert [(d.subject, d.attempt) for d in seen] == [(subjects.SIM_REQUESTED, 1)]


async def test_a_permanent_error_is_dead_lettered_at_the_first_delivery(js):
    calls = []

    async def on_request(req: ev.SimRequested, delivery: Delivery) -> list[ev.Event]:
        calls.append(delivery.attempt)
        raise PermanentError("no such scene")

    async with claiming(js, {ev.SimRequested: on_request}, max_deliver=3):
        await publish_event(js, _request("claim-bad"))
        dead = await _first(js, "simreel.evt.dead.>")
        await _all_settled(js)
    assert isinstance(dead, ev.DeadLettered)
    assert (dead.service, dead.run_id, dead.reason, dead.deliveries) == (SERVICE, "claim-bad", "no such scene", 1)
    assert calls == [1]


async def test_a_failing_handler_is_retried_then_dead_lettered(js):
    calls = []

    async def on_request(req: ev.SimRequested, delivery: Delivery) -> list[ev.Event]:
        calls.append(delivery.attempt)
        raise RuntimeError("boom")

    async with claiming(js, {ev.SimRequested: on_request}, max_deliver=2, ack_wait_s=5.0):
        await publish_event(js, _request("claim-flaky"))
        dead = await _first(js, "simreel.evt.dead.>")
        await _all_settled(js)
    assert isinstance(dead, ev.DeadLettered)
    assert dead.reason == "RuntimeError: boom (after 2 deliveries)" and dead.deliveries == 2
    assert calls == [1, 2]


async def test_an_undecodable_message_gets_its_refusal_then_a_dead_letter(js):
    async def on_request(req: ev.SimRequested, delivery: Delivery) -> list[ev.Event]:
        raise AssertionError("an undecodable message reaches no handler")

    def refuse(data: bytes, error: Exception, delivery: Delivery) -> list[ev.Event]:
        return [ev.SimFailed.of("claim-garbage", 1, "bad_request", f"undecodable: {error}")]

    async with claiming(js, {ev.SimRequested: on_request}, on_undecodable=refuse):
        await js.publish(subjects.SIM_REQUESTED, b"{not json", headers={"Nats-Msg-Id": "garbage"})
        dead = await _first(js, "simreel.evt.dead.>")
        refusal = await _first(js, subjects.of_run(ev.SimFailed, "claim-garbage"))
        await _all_settled(js)
    assert isinstance(dead, ev.DeadLettered) and dead.reason.startswith("undecodable message:")
    assert dead.payload_preview == "{not json"
    assert isinstance(refusal, ev.SimFailed) and refusal.message.startswith("undecodable:")
    told_first = [type(e) async for e in replay(js) if isinstance(e, (ev.SimFailed, ev.DeadLettered))]
    assert told_first == [ev.SimFailed, ev.DeadLettered]
