"""Claiming a service's work from its durable consumer and settling each message.

Each message: decode → handler → publish the events it produces → ack. A message that does not
decode, has no handler, or failed `max_deliver` times is dead-lettered and terminated; a handler
that fails is nak'ed with backoff; on shutdown, work still running after the grace period is
cancelled and nak'ed back so another replica takes it over at once.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from typing import Any, Awaitable, Callable, Mapping

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.runtime import log as logs
from simreel.transport.handler import Delivery, Handler, PermanentError, Refusal, handler_events

log = logs.get("simreel.bus")


def consumer_config(service: str, *, concurrency: int, ack_wait_s: float, max_deliver: int) -> api.ConsumerConfig:
    """The service's shared durable pull consumer over the subjects it works on."""
    filters = subjects.WORK_CONSUMERS[service]
    config = api.ConsumerConfig(
        durable_name=service,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        # One more than ours: the last delivery is the one that writes the dead letter.
        max_deliver=max_deliver + 1,
        max_ack_pending=max(concurrency * 4, 16),
    )
    if len(filters) == 1:
        config.filter_subject = filters[0]
    else:
        config.filter_subjects = list(filters)
    return config


async def waiting_pullers(js: JetStreamContext, consumer: str, stream: str = subjects.EVENTS_STREAM) -> int:
    """How many fetches are waiting on a durable consumer (0 if it does not exist yet)."""
    try:
        info = await js.consumer_info(stream, consumer)
    except (nats.errors.Error, asyncio.TimeoutError):
        return 0
    return info.num_waiting or 0


class WorkClaimer:
    """One service's claiming loop: `run` until stop, each claimed message handled in a task of
    its own, at most `concurrency` at a time."""

    def __init__(self, js: JetStreamContext, service: str, handlers: Mapping[type, Handler], *,
                 publish: Callable[[ev.Event], Awaitable[Any]], ack_wait_s: float = 30.0, max_deliver: int = 5,
                 on_undecodable: Refusal | None = None) -> None:
        self.js = js
        self.service = service
        self.handlers = handlers
        self.publish = publish
        self.ack_wait_s = ack_wait_s
        self.max_deliver = max_deliver
        self.on_undecodable = on_undecodable
        self._inflight: dict[asyncio.Task, Msg] = {}
        # Tasks that already caught their cancellation and are nak'ing their message back.
        self._handing_back: weakref.WeakSet[asyncio.Task] = weakref.WeakSet()

    # --- the worker loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, concurrency: int = 1, grace_s: float = 20.0) -> None:
        """Claim and handle messages until `stop` is set; then give in-flight work `grace_s` to
        finish and hand the rest back."""
        sub = await self._subscribe(stop, concurrency)
        if sub is None:
            return
        slots = asyncio.Semaphore(concurrency)
        log.info("consuming", service=self.service, subjects=subjects.WORK_CONSUMERS[self.service],
                 concurrency=concurrency)
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                if not await self._free_slot(slots, stop_wait):
                    break
                msg = await self._fetch_one(sub)
                if msg is None:
                    slots.release()
                    continue
                self._start(msg, slots)
        finally:
            stop_wait.cancel()
            await self._drain(grace_s)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _subscribe(self, stop: asyncio.Event, concurrency: int) -> Any:
        """Create or update the durable consumer and bind to it, retried while JetStream does not
        answer; None if `stop` is set first."""
        config = consumer_config(self.service, concurrency=concurrency, ack_wait_s=self.ack_wait_s,
                                 max_deliver=self.max_deliver)
        while not stop.is_set():
            try:
                # Create or update: a new release may claim more subjects with the same durable name.
                await self.js.add_consumer(subjects.EVENTS_STREAM, config=config)
                return await self.js.pull_subscribe_bind(durable=self.service, stream=subjects.EVENTS_STREAM)
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError) as e:
                log.warning("consumer_create_retry", service=self.service, error=type(e).__name__)
                await asyncio.sleep(0.5)
        return None

    @staticmethod
    async def _free_slot(slots: asyncio.Semaphore, stop_wait: asyncio.Future) -> bool:
        """Wait for room for one more message; False if stop comes first."""
        acquire = asyncio.ensure_future(slots.acquire())
        done, _ = await asyncio.wait({acquire, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if acquire not in done:
            acquire.cancel()
            return False
        return True

    async def _fetch_one(self, sub: Any) -> Msg | None:
        """The next message, or None when there is none within a second or the fetch failed
        (reconnecting, server restart: backed off before the next try)."""
        try:
            msgs = await sub.fetch(1, timeout=1.0)
        except nats.errors.TimeoutError:
            return None
        except Exception as e:  # reconnecting, server restart: back off and retry
            log.warning("fetch_failed", service=self.service, error=f"{type(e).__name__}: {e}")
            await asyncio.sleep(0.5)
            return None
        return msgs[0] if msgs else None

    def _start(self, msg: Msg, slots: asyncio.Semaphore) -> None:
        """Handle the message in a task of its own, which frees its slot when it ends."""
        task = asyncio.create_task(self.handle(msg))
        self._inflight[task] = msg

        def _done(t: asyncio.Task) -> None:
            self._inflight.pop(t, None)
            slots.release()

        task.add_done_callback(_done)

    async def _drain(self, grace_s: float) -> None:
        if not self._inflight:
            return
        log.info("draining", service=self.service, inflight=len(self._inflight), grace_s=grace_s)
        _, pending = await asyncio.wait(set(self._inflight), timeout=grace_s)
        await self._hand_back(pending)

    async def _hand_back(self, pending: set[asyncio.Task]) -> None:
        """Cancel work still running after the grace period; `handle` naks its message so another
        replica takes it at once. A cancellation can be lost on its way (Python 3.11's asyncio.wait_for,
        used inside nats-py's fetch, swallows one that lands as its inner wait completes: the handler
        then just runs on), so it is repeated for tasks that have not started handing back, and
        whatever still runs after 5 s has its message nak'ed from here."""
        deadline = time.monotonic() + 5.0
        while pending and time.monotonic() < deadline:
            for t in pending:
                if t not in self._handing_back:
                    t.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        for t in pending:
            msg = self._inflight.get(t)
            if msg is not None:
                with contextlib.suppress(Exception):
                    await msg.nak()
                log.warning("handed_back_unfinished", service=self.service, subject=msg.subject)

    # --- one message -------------------------------------------------------------------------------

    async def handle(self, msg: Msg) -> None:
        """Decode, dispatch and settle one message: acked once the handler's events are published,
        nak'ed for a retry, or dead-lettered."""
        meta = msg.metadata
        delivery = Delivery(subject=msg.subject, attempt=meta.num_delivered, stream_seq=meta.sequence.stream, msg=msg)
        routed = await self._route(msg, delivery)
        if routed is None:
            return
        event, handler = routed
        bound = logs.get(self.service).bind(run_id=getattr(event, "run_id", None), event=type(event).__name__,
                                            delivery=delivery.attempt)
        beat = asyncio.create_task(self._heartbeat(msg))
        try:
            async for produced in handler_events(handler, event, delivery):
                await self.publish(produced)
            beat.cancel()
            await msg.ack()
        except asyncio.CancelledError:
            self._handing_back.add(asyncio.current_task())
            beat.cancel()
            # Shutting down: hand the work back at once instead of waiting for ack_wait.
            with contextlib.suppress(Exception):
                await msg.nak()
            bound.info("handed_back")
            raise
        except PermanentError as e:
            beat.cancel()
            await self._dead_letter(msg, str(e), delivery, event)
        except Exception as e:  # noqa: BLE001 - any failure is retried, then dead-lettered
            beat.cancel()
            bound.exception("handler_failed", error=f"{type(e).__name__}: {e}")
            await self._retry_or_give_up(msg, e, delivery, event)

    async def _route(self, msg: Msg, delivery: Delivery) -> tuple[ev.Event, Handler] | None:
        """The event and its handler; None once a message no handler may take is dead-lettered (it
        does not decode, no handler takes its type, or it came back more than `max_deliver` times)."""
        try:
            event = ev.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            if self.on_undecodable is not None:
                for refusal in self.on_undecodable(msg.data, e, delivery):
                    await self.publish(refusal)
            await self._dead_letter(msg, f"undecodable message: {e}", delivery)
            return None
        handler = self.handlers.get(type(event))
        if handler is None:
            await self._dead_letter(msg, f"no handler for {type(event).__name__} in {self.service}", delivery)
            return None
        if delivery.attempt > self.max_deliver:
            await self._dead_letter(msg, f"gave up after {self.max_deliver} deliveries", delivery, event)
            return None
        return event, handler

    async def _retry_or_give_up(self, msg: Msg, error: Exception, delivery: Delivery, event: ev.Event) -> None:
        """A failed handler's message: nak'ed with backoff for another delivery, or dead-lettered
        at the last one."""
        if delivery.attempt >= self.max_deliver:
            await self._dead_letter(msg, f"{type(error).__name__}: {error} (after {delivery.attempt} deliveries)",
                                    delivery, event)
        else:
            with contextlib.suppress(Exception):
                await msg.nak(delay=min(2.0 ** delivery.attempt, 30.0))

    async def _heartbeat(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(max(self.ack_wait_s / 3, 0.5))
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _dead_letter(self, msg: Msg, reason: str, delivery: Delivery, event: ev.Event | None = None) -> None:
        dl = ev.DeadLettered.of(f"{self.service}-{delivery.stream_seq}", run_id=getattr(event, "run_id", None),
                                service=self.service, subject=msg.subject, reason=reason, deliveries=delivery.attempt,
                                payload=msg.data)
        log.warning("dead_lettered", service=self.service, subject=msg.subject, reason=reason[:300], run_id=dl.run_id)
        try:
            await self.publish(dl)
        finally:
            with contextlib.suppress(Exception):
                await msg.term()
