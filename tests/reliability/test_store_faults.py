"""The artifact store side fails: the uploader dies in the middle of an upload, or the S3 server is
down while uploads happen. Every artifact ends up stored exactly once, nothing is lost."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal

import pytest

from simreel.contract import events as ev
from simreel.contract import subjects
from simreel.runtime.config import NatsSettings

from tests.support.artifacts import expected_keys
from tests.support.eventlog import Tap, claimed, replay, stored_counts, submit, wait_result
from tests.support.processes import kill
from tests.support.runs import request
from tests.support.waits import until

pytestmark = pytest.mark.integration


def _objects(s3, bucket: str, run_id: str) -> dict[str, int]:
    client = s3.client()
    return {o.object_name: o.size for o in client.list_objects(bucket, prefix=f"simreel/default/{run_id}/",
                                                               recursive=True)}


def _sha256(s3, bucket: str, key: str) -> str:
    resp = s3.client().get_object(bucket, key)
    try:
        return hashlib.sha256(resp.read()).hexdigest()
    finally:
        resp.close()
        resp.release_conn()


def _check_stored_once(s3, bucket: str, req: ev.SimRequested, events: list[ev.Event]) -> None:
    mine = [e for e in events if e.run_id == req.run_id]
    assert not [e for e in mine if isinstance(e, (ev.StoreFailed, ev.DeadLettered))]
    counts = stored_counts(mine)
    keys = expected_keys(req)
    assert set(counts) == keys and set(counts.values()) == {1}, counts  # one ArtifactStored per key
    objects = _objects(s3, bucket, req.run_id)
    assert set(objects) == keys, objects  # one object per key, nothing else
    for a in (e for e in mine if isinstance(e, ev.ArtifactStored)):
        assert objects[a.key] == a.bytes
        assert _sha256(s3, bucket, a.key) == a.sha256
    for v in (e for e in mine if isinstance(e, ev.VideoAvailable)):
        stored = next(e for e in mine if isinstance(e, ev.ArtifactStored) and e.source_event_id == v.event_id)
        assert stored.sha256 == v.sha256


@contextlib.contextmanager
def _frozen(s3):
    """SIGSTOP the S3 server's process group: connections are accepted by the kernel, requests hang."""
    pgid = os.getpgid(s3.pid)
    os.killpg(pgid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pgid, signal.SIGCONT)


async def _uploader_claiming(tap: Tap) -> None:
    """Until the uploader's work consumer exists: the uploader passed its start checks (one HEAD of the
    bucket, which a frozen S3 would hold) and claims work. Only then may a test freeze S3."""
    js = tap.nc.jetstream()

    async def claiming() -> bool:
        return bool(await js.consumer_info(subjects.EVENTS_STREAM, "uploader"))

    await until(claiming, timeout=60, what="the uploader to claim work")


async def test_uploader_killed_mid_upload_stores_each_artifact_once(make_stack, s3server):
    bucket = "rel-upload-kill"
    stack = make_stack(env=s3server.env(bucket))
    nats = NatsSettings(url=stack.url)
    req = request("upload-kill", episodes=2)
    n_inputs = 2 + 3  # two VideoAvailable, SceneSaved, TelemetryStaged, SimCompleted (report)
    async with Tap(nats) as tap:
        await _uploader_claiming(tap)
        with _frozen(s3server):
            await submit(nats, req)
            await tap.wait(lambda evs: tap.of(req.run_id, ev.SimCompleted), timeout=60, what="SimCompleted")
            js = tap.nc.jetstream()

            async def claimed_all() -> bool:
                info = await js.consumer_info(subjects.EVENTS_STREAM, "uploader")
                return info.num_ack_pending == 4 and info.num_pending + info.num_ack_pending == n_inputs

            # The uploader holds 4 messages (its concurrency), each blocked inside an S3 call: mid-upload.
            await until(claimed_all, timeout=30, what="the uploader to be inside its uploads")
            assert not tap.of(req.run_id, ev.ArtifactStored)
            kill(stack.procs["uploader"][0])
        stack.start_service("uploader")
        result = await wait_result(nats, req.run_id, timeout=90)
        assert result.ok, result.error
    _check_stored_once(s3server, bucket, req, await replay(nats))


async def test_s3_outage_during_uploads_nothing_lost(make_stack, s3server):
    bucket = "rel-outage"
    stack = make_stack(env=s3server.env(bucket))
    nats = NatsSettings(url=stack.url)
    first = request("outage-0", episodes=2)
    later = [request(f"outage-{i}", episodes=2, seed=i) for i in (1, 2)]
    try:
        async with Tap(nats) as tap:
            await submit(nats, first)
            await tap.wait(lambda evs: tap.of(first.run_id, ev.ArtifactStored), timeout=60, what="a first upload")
            await s3server.astop(grace_s=0)  # down while `first` is still uploading
            await submit(nats, *later)
            await tap.wait(lambda evs: all(tap.of(r.run_id, ev.SimCompleted) for r in later), timeout=60,
                           what="the later runs to be simulated and encoded")
            # The outage lasts until every upload slot (concurrency 4) holds a message it cannot store
            # while the server is down: those uploads are failing and backing off.
            js = tap.nc.jetstream()
            await until(lambda: _is(claimed(js, "uploader"), 4), timeout=60,
                        what="the uploader to hold 4 uploads during the outage")
            stored_during = {e.key for e in tap.events if isinstance(e, ev.ArtifactStored)}
            await s3server.astart()
            results = [await wait_result(nats, r.run_id, timeout=120) for r in (first, *later)]
    finally:
        if not s3server.running:
            await s3server.astart()
    for r in results:
        assert r.ok, r.error
    events = await replay(nats)
    for r in (first, *later):
        _check_stored_once(s3server, bucket, r, events)
    # The outage really hit uploads: some of the later artifacts could only be stored after it.
    assert any(k not in stored_during for r in later for k in expected_keys(r))


async def test_uploader_sigterm_mid_upload_hands_back(make_stack, s3server):
    """SIGTERM while every upload hangs inside S3: after its grace the uploader naks its messages (they
    are available again long before their ack_wait), exits 0 once its blocked calls return, and a new
    uploader stores each artifact exactly once."""
    bucket = "rel-upload-term"
    stack = make_stack(env={**s3server.env(bucket), "SIMREEL_SHUTDOWN_GRACE_S": "1", "SIMREEL_ACK_WAIT_S": "60"})
    nats = NatsSettings(url=stack.url)
    req = request("upload-term", episodes=1)
    async with Tap(nats) as tap:
        await _uploader_claiming(tap)
        with _frozen(s3server):
            await submit(nats, req)
            await tap.wait(lambda evs: tap.of(req.run_id, ev.SimCompleted), timeout=60, what="SimCompleted")
            js = tap.nc.jetstream()

            async def claimed_all() -> bool:
                info = await js.consumer_info(subjects.EVENTS_STREAM, "uploader")
                return info.num_ack_pending == 4 and info.num_pending == 0

            await until(claimed_all, timeout=30, what="the uploader to be inside its 4 uploads")
            old = stack.procs["uploader"][0]
            old.send_signal(signal.SIGTERM)
            # Look at the work consumer as the next uploader would: all 4 messages are there again on
            # their second delivery, with 60 s of ack_wait still to run - handed back. The look hands
            # them back once more for the new uploader.
            probe = await js.pull_subscribe_bind(durable="uploader", stream=subjects.EVENTS_STREAM)
            back: list = []

            async def handed_back() -> bool:
                with contextlib.suppress(asyncio.TimeoutError):
                    back.extend(await probe.fetch(4 - len(back), timeout=1.0))
                return len(back) == 4

            try:
                await until(handed_back, timeout=20, what="4 messages handed back")
                assert sorted(m.metadata.num_delivered for m in back) == [2, 2, 2, 2]
                assert {ev.decode(m.data).run_id for m in back} == {req.run_id}
                for m in back:
                    await m.nak()
            finally:
                await probe.unsubscribe()
            assert not tap.of(req.run_id, ev.ArtifactStored)
        # Its blocked S3 calls return once the server runs again; then it exits cleanly.
        assert await asyncio.to_thread(old.wait, 60) == 0
        stack.start_service("uploader")
        result = await wait_result(nats, req.run_id, timeout=60)
        assert result.ok, result.error
    _check_stored_once(s3server, bucket, req, await replay(nats))


async def _is(coro, value) -> bool:
    return (await coro) == value

