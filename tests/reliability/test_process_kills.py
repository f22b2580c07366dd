"""Workers die mid-run (SIGKILL) or are asked to stop (SIGTERM): the run still completes, each frame
once, and a re-encoded video is byte-identical to a clean one."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from simreel import events as ev
from simreel.config import NatsSettings

from .helpers import (Tap, frames_in_stream, frames_of, holder_of, kill, log_has, mp4_frame_count, request,
                      sha256_file, until, wait_result)

pytestmark = pytest.mark.integration

LONG_S = 30.0  # 450 frames at 15 fps: a few seconds of rendering, so a kill lands mid-episode


async def test_encoder_sigkill_mid_episode_reencodes_byte_identical(make_stack):
    stack = make_stack(replicas={"encoder": 2})
    nats = NatsSettings(url=stack.url)
    async with Tap(nats) as tap:
        # A clean run, then the same scene/seed/policy under another run id, with its encoder killed.
        clean, faulty = request("enc-clean", duration_s=LONG_S), request("enc-killed", duration_s=LONG_S)
        from .helpers import submit
        await submit(nats, clean)
        clean_result = await wait_result(nats, clean.run_id, timeout=120)
        assert clean_result.ok, clean_result.error

        await submit(nats, faulty)
        await tap.wait(lambda evs: tap.of(faulty.run_id, ev.SimStarted), timeout=60, what="SimStarted")
        victim = await until(lambda: holder_of(stack, "encoder", faulty.run_id, "encode_started"), timeout=30,
                             what="an encoder to claim the run")
        # Mid-episode: the encoder has frames to read, the episode has not ended, no video yet.
        await until(lambda: frames_in_stream(tap.nc.jetstream(), faulty.run_id), timeout=30, what="first frames")
        assert not tap.of(faulty.run_id, (ev.VideoAvailable, ev.EpisodeEnded)), "the kill came too late"
        kill(victim)
        killed_at = len(tap.events)

        result = await wait_result(nats, faulty.run_id, timeout=120)
        assert result.ok, result.error
        # The survivor did the work, from the frames kept in FRAMES.
        survivor = next(i for i, p in enumerate(stack.procs["encoder"]) if p is not victim)
        assert log_has(stack.log_dir / f"encoder-{survivor}.log", '"video_encoded"', f'"run_id": "{faulty.run_id}"')
        assert any(isinstance(e, ev.VideoAvailable) and e.run_id == faulty.run_id for e in tap.events[killed_at:])

    mp4 = lambda r: next(a for a in r.artifacts if a.kind == "video")  # noqa: E731
    a, b = mp4(clean_result), mp4(result)
    assert a.sha256 == b.sha256 == sha256_file(a.path) == sha256_file(b.path)
    assert Path(a.path).read_bytes() == Path(b.path).read_bytes()
    assert mp4_frame_count(b.path) == frames_of(faulty)


async def test_simulator_sigkill_mid_run_retries_and_drops_stale_frames(make_stack):
    stack = make_stack()
    nats = NatsSettings(url=stack.url)
    req = request("sim-killed", duration_s=LONG_S, episodes=1)
    async with Tap(nats) as tap:
        from .helpers import submit
        await submit(nats, req)
        await tap.wait(lambda evs: tap.of(req.run_id, ev.SimStarted), timeout=60, what="SimStarted")
        js = tap.nc.jetstream()
        await until(lambda: frames_in_stream(js, req.run_id), timeout=30, what="first frames of attempt 1")
        assert not tap.of(req.run_id, ev.EpisodeEnded), "the kill came too late"
        kill(stack.procs["simulator"][0])
        stale = await frames_in_stream(js, req.run_id)
        assert stale > 0
        stack.start_service("simulator")

        result = await wait_result(nats, req.run_id, timeout=120)
        assert result.ok, result.error
        started = [e.attempt for e in tap.of(req.run_id, ev.SimStarted)]
        assert started == [1, 2]
        ended = tap.of(req.run_id, ev.EpisodeEnded)
        assert [e.attempt for e in ended] == [2] and ended[0].frames == frames_of(req)
        videos = tap.of(req.run_id, ev.VideoAvailable)
        assert [(v.attempt, v.frames) for v in videos] == [(2, frames_of(req))]
        # Nothing of the dead attempt is left behind in FRAMES either.
        await until(lambda: _zero(frames_in_stream(js, req.run_id)), timeout=30, what="stale frames purged")

    video = next(a for a in result.artifacts if a.kind == "video")
    assert mp4_frame_count(video.path) == frames_of(req)
    telemetry = next(a for a in result.artifacts if a.kind == "telemetry")
    import json
    rows = [json.loads(line) for line in Path(telemetry.path).read_text().splitlines()]
    assert [r["frame"] for r in rows] == list(range(frames_of(req)))  # each frame once, in order


async def _zero(coro) -> bool:
    return (await coro) == 0


@pytest.mark.parametrize("service", ["encoder", "simulator"])
async def test_sigterm_mid_run_hands_work_back(make_stack, service):
    """SIGTERM to the only replica mid-episode: it hands the work back (nak) at the end of its grace
    period and exits 0; a new replica takes over at once (not after ack_wait) and the run completes."""
    stack = make_stack(env={"SIMREEL_ACK_WAIT_S": "60", "SIMREEL_SHUTDOWN_GRACE_S": "1"})
    nats = NatsSettings(url=stack.url)
    req = request(f"term-{service}", duration_s=LONG_S)
    async with Tap(nats) as tap:
        from .helpers import submit
        await submit(nats, req)
        await tap.wait(lambda evs: tap.of(req.run_id, ev.SimStarted), timeout=60, what="SimStarted")
        await until(lambda: frames_in_stream(tap.nc.jetstream(), req.run_id), timeout=30, what="first frames")
        if service == "encoder":
            await until(lambda: holder_of(stack, "encoder", req.run_id, "encode_started"), timeout=30,
                        what="the encoder to claim the run")
        assert not tap.of(req.run_id, (ev.EpisodeEnded, ev.VideoAvailable)), "SIGTERM came too late"
        old = stack.procs[service][0]
        assert kill(old, signal.SIGTERM) == 0
        assert log_has(stack.log_dir / f"{service}-0.log", '"handed_back"', f'"run_id": "{req.run_id}"')
        stack.start_service(service)
        # Well under ack_wait (60 s): the nak made the message available at once.
        result = await wait_result(nats, req.run_id, timeout=45)
        assert result.ok, result.error
        if service == "simulator":
            assert [e.attempt for e in tap.of(req.run_id, ev.SimStarted)] == [1, 2]
    video = next(a for a in result.artifacts if a.kind == "video")
    assert mp4_frame_count(video.path) == frames_of(req)
