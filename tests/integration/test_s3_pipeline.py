"""The stack on S3 (a real `weed server -s3`) with object-store staging and event-sourced retention.

Encoder and uploader share no directory here: encoded files travel through a JetStream object store.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import nats.js.errors
import pytest
from minio.error import S3Error

from simreel.contract import events as ev
from simreel.contract import keep
from simreel.contract import subjects
from simreel.client import Client
from simreel.runtime.config import NatsSettings
from simreel.stack.embedded import Stack
from simreel.readmodels.artifact_index import ArtifactIndex

from tests.support.runs import run_request, small_request
from tests.support.s3server import S3Server

pytestmark = pytest.mark.integration

POLICIES = {"keep2": {"keep_latest": 2}, "aged": {"max_age_s": 2}, "small": {"max_total_bytes": 1},
            "outcomes": {"keep_latest": 1, "keep_worst": 1}}


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


@pytest.fixture(scope="module")
def s3_stack(s3, tmp_path_factory):
    base = tmp_path_factory.mktemp("s3stack")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMREEL_")}
    env.update(s3.env("artifacts"))
    env.update({"SIMREEL_STAGING": "objectstore", "SIMREEL_RETENTION_POLICIES": json.dumps(POLICIES),
                "SIMREEL_RETENTION_SWEEP_S": "1"})
    stack = Stack(data_dir=base / "data", out_dir=base / "unused", env=env)
    # No shared directory: the stack's default staging dir must not be used by anyone.
    stack.service_env = _without_dir_staging(stack.service_env)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def _without_dir_staging(original):
    def env():
        e = original()
        e["SIMREEL_STAGING"] = "objectstore"
        e.pop("SIMREEL_STAGING_DIR", None)
        return e
    return env


def _object(s3, key: str) -> bytes | None:
    try:
        resp = s3.client().get_object("artifacts", key)
    except S3Error as e:
        if e.code in ("NoSuchKey", "NoSuchObject"):
            return None
        raise
    try:
        return resp.read()
    finally:
        resp.close()
        resp.release_conn()


async def _replay(url: str, subject: str = "simreel.evt.>") -> list[ev.Event]:
    c = await Client.connect(NatsSettings(url=url))
    try:
        return [e async for e in c.bus.replay(subject)]
    finally:
        await c.close()


async def _wait_for(url: str, subject: str, predicate, timeout: float = 60.0) -> list[ev.Event]:
    c = await Client.connect(NatsSettings(url=url))
    seen = []
    try:
        async def go():
            async for e in c.bus.follow(subject):
                seen.append(e)
                if predicate(seen):
                    return
        await asyncio.wait_for(go(), timeout)
        return seen
    finally:
        await c.close()


async def test_artifacts_go_to_s3_through_object_store_staging(s3, s3_stack):
    result, seen = await run_request(s3_stack.url, small_request(run_id="s3-run-1", session="plain", episodes=2))
    assert result.status == "completed", (result.error, s3_stack.logs()[-3000:])
    staged = [e.staged for e in seen if isinstance(e, (ev.VideoAvailable, ev.SceneSaved, ev.TelemetryStaged))]
    assert staged and all(s.startswith("obj:") for s in staged)
    for a in result.artifacts:
        assert a.bucket == "artifacts" and a.path is None
        assert a.key.startswith("simreel/plain/s3-run-1/")
        body = urllib.request.urlopen(a.url, timeout=10).read()  # the presigned URL works as is
        assert hashlib.sha256(body).hexdigest() == a.sha256 and len(body) == a.bytes
        assert a.expires_at is not None
    # Staged objects and the run's frames are gone once stored.
    c = await Client.connect(NatsSettings(url=s3_stack.url))
    try:
        store = await c.bus.js.object_store(subjects.STAGING_BUCKET)
        try:
            names = [o.name for o in await store.list(ignore_deletes=True)]
        except nats.js.errors.NotFoundError:  # nats-py's way of saying "no objects left"
            names = []
        assert not [n for n in names if n.startswith("s3-run-1/")]
        info = await c.bus.js.stream_info(subjects.FRAMES_STREAM, subjects_filter="simreel.frames.s3-run-1.>")
        assert not (info.state.subjects or {})
    finally:
        await c.close()


async def test_keep_latest_two_deletes_the_oldest_from_s3(s3, s3_stack):
    runs = []
    for i in range(3):
        r, _ = await run_request(s3_stack.url, small_request(run_id=f"keep2-{i}", session="keep2", duration_s=0.4,
                                                             outputs=ev.OutputSpec(telemetry=False)))
        assert r.status == "completed", r.error
        runs.append(r)
    oldest = next(a for a in runs[0].artifacts if a.kind == "video")
    deleted = await _wait_for(s3_stack.url, "simreel.evt.artifact.deleted.keep2-0",
                              lambda seen: any(e.key == oldest.key for e in seen))
    assert [e.reason for e in deleted if e.key == oldest.key] == ["count"]
    assert _object(s3, oldest.key) is None
    for r in runs[1:]:
        video = next(a for a in r.artifacts if a.kind == "video")
        assert _object(s3, video.key) is not None  # the latest two stay
    # Reports and scenes are not videos: the count policy leaves them alone.
    assert _object(s3, next(a for a in runs[0].artifacts if a.kind == "report").key) is not None


async def test_max_age_and_max_bytes_policies(s3, s3_stack):
    aged, _ = await run_request(s3_stack.url, small_request(run_id="aged-1", session="aged", duration_s=0.4))
    assert aged.status == "completed"
    keys = {a.key for a in aged.artifacts}
    gone = await _wait_for(s3_stack.url, "simreel.evt.artifact.deleted.aged-1",
                           lambda seen: {e.key for e in seen} >= keys)
    assert {e.reason for e in gone} == {"age"}
    assert all(_object(s3, k) is None for k in keys)

    small, _ = await run_request(s3_stack.url, small_request(run_id="small-1", session="small", duration_s=0.4))
    assert small.status == "completed"
    gone = await _wait_for(s3_stack.url, "simreel.evt.artifact.deleted.small-1",
                           lambda seen: {e.key for e in seen} >= {a.key for a in small.artifacts})
    assert {e.reason for e in gone} == {"bytes"}


async def test_retention_restart_rebuilds_the_same_index(s3, s3_stack):
    # A policy here keeps the worst returns, so the index folds episodes' outcomes too: the whole log.
    events = await _replay(s3_stack.url, "simreel.evt.>")
    expected = ArtifactIndex().apply_all(events).digest()
    (proc,) = s3_stack.procs["retention"]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    s3_stack.procs["retention"] = []
    new = s3_stack.start_service("retention")
    log = s3_stack.log_dir / "retention-0.log"
    rebuilt = None
    for _ in range(600):  # the log line appears once the index has caught up with the log
        if new.poll() is not None:
            break
        lines = [json.loads(ln) for ln in log.read_text().splitlines() if '"index_rebuilt"' in ln]
        if len(lines) >= 2:
            rebuilt = lines[-1]
            break
        await asyncio.sleep(0.05)
    assert rebuilt is not None, s3_stack.logs()[-2000:]
    assert rebuilt["digest"] == expected and rebuilt["artifacts"] == len(ArtifactIndex().apply_all(events).entries)


async def test_rm_deletes_every_artifact_of_a_run(s3, s3_stack):
    r, _ = await run_request(s3_stack.url, small_request(run_id="rm-me", session="plain", duration_s=0.4))
    assert r.status == "completed"
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "simreel.cli", "rm", "rm-me", "--nats", s3_stack.url, "--json"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert sorted(out["deleted"]) == sorted(a.key for a in r.artifacts) and out["pending"] == []
    assert all(_object(s3, a.key) is None for a in r.artifacts)
    reasons = {e.reason for e in await _replay(s3_stack.url, "simreel.evt.artifact.deleted.rm-me")}
    assert reasons == {"manual"}


async def _staged_names(url: str, prefix: str) -> list[str]:
    c = await Client.connect(NatsSettings(url=url))
    try:
        store = await c.bus.js.object_store(subjects.STAGING_BUCKET)
        try:
            return [o.name for o in await store.list(ignore_deletes=True) if o.name.startswith(prefix)]
        except nats.js.errors.NotFoundError:
            return []
    finally:
        await c.close()


async def test_a_keep_rule_through_object_store_staging(s3, s3_stack):
    req = small_request(run_id="s3-keep", session="plain", episodes=3, duration_s=0.4,
                        outputs=ev.OutputSpec(keep=keep.worst(1)))
    result, seen = await run_request(s3_stack.url, req)
    assert result.status == "completed", (result.error, s3_stack.logs()[-3000:])
    ended = {e.episode: e.episode_return for e in seen if isinstance(e, ev.EpisodeEnded)}
    worst = min(ended, key=lambda k: (ended[k], k))
    assert [a.episode for a in result.artifacts if a.kind == "video"] == [worst]
    held = [e for e in seen if isinstance(e, ev.VideoHeld)]
    assert len(held) == 3 and all(e.staged.startswith("obj:") for e in held)
    deadline = time.monotonic() + 30
    while await _staged_names(s3_stack.url, "s3-keep/"):  # discarded candidates deleted, the kept one once stored
        assert time.monotonic() < deadline, await _staged_names(s3_stack.url, "s3-keep/")
        await asyncio.sleep(0.2)


async def test_retention_keeps_the_worst_return_besides_the_latest(s3, s3_stack):
    runs = []
    for i in range(3):
        r, seen = await run_request(s3_stack.url, small_request(run_id=f"outcome-{i}", session="outcomes", seed=i,
                                                                duration_s=0.4, outputs=ev.OutputSpec(telemetry=False)))
        assert r.status == "completed", r.error
        ret = next(e.episode_return for e in seen if isinstance(e, ev.EpisodeEnded))
        runs.append((r, ret))
    older = runs[:-1]
    spared = min(older, key=lambda p: p[1])[0]
    dropped = max(older, key=lambda p: p[1])[0]
    video = lambda r: next(a for a in r.artifacts if a.kind == "video")  # noqa: E731
    deadline = time.monotonic() + 30
    while _object(s3, video(dropped).key) is not None:  # retention reacts to the third run's ArtifactStored
        assert time.monotonic() < deadline, "the older, better video was not deleted"
        await asyncio.sleep(0.2)
    assert _object(s3, video(spared).key) is not None  # the worst return is kept besides the latest
    assert _object(s3, video(runs[-1][0]).key) is not None
