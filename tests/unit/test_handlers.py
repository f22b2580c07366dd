"""Every service's handlers as specifications: given these events, these events come out.

No NATS here (tests/support/handlers.MemoryBus stands in for what handlers use of the bus); the
scenes, encoders, stores and staging are the real ones, at tiny sizes. Delivery rules (ack after
publish, retries, dead letters) are tested against a real nats-server in tests/integration.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from simreel.contract import events as ev
from simreel.contract import keep
from simreel.runtime.config import Limits, Settings
from simreel.readmodels.artifact_index import Policy, ArtifactIndex
from simreel.transport.run_publisher import EpisodeOutcome, RunPublisher
from simreel.services.encoder.handlers import Encoder
from simreel.services.retention.handlers import Retention
from simreel.services.simulator.handlers import Simulator
from simreel.services.uploader.handlers import Uploader
from simreel.store import LocalStore

W, H, FPS = 32, 24, 10


def kinds(events) -> list[str]:
    return [type(e).__name__ for e in events]


@pytest.fixture
def settings(tmp_path):
    return Settings(staging="dir", staging_dir=tmp_path / "staging", frame_idle_timeout_s=5.0,
                    limits=Limits(max_width=64))


# --- simulator -------------------------------------------------------------------------------------


def request(**kw) -> ev.SimRequested:
    base = dict(run_id="sim-1", scene="cartpole", episodes=2, duration_s=0.3, policy="random",
                render=ev.RenderSpec(width=W, height=H, fps=FPS))
    return ev.SimRequested(**{**base, **kw})


async def test_simulator_announces_start_each_episode_scene_and_completion(bus, given, settings, staging):
    out = await given.handle(Simulator(bus, settings, staging).on_sim_requested, request())
    assert kinds(out) == ["SimStarted", "EpisodeEnded", "EpisodeEnded", "SceneSaved", "SimCompleted"]
    started, e0, e1, scene, done = out
    assert (started.width, started.height, started.fps, started.frames_per_episode) == (W, H, FPS, [3, 3])
    assert [e0.episode, e1.episode] == [0, 1] and e0.frames == e1.frames == 3
    assert done.frames == 6 and done.expected_artifacts == 2 + 1 + 1 + 1  # 2 videos, scene, report, telemetry
    assert [e["episode"] for e in done.report["episodes"]] == [0, 1]
    async with staging.local(scene.staged) as p:
        assert hashlib.sha256(Path(p).read_bytes()).hexdigest() == scene.sha256
    # the frames went to FRAMES, each episode closed by a `last` batch
    batches = [ev.decode_frames(m.data) for m in bus.frames]
    assert [b.episode for b in batches if b.last] == [0, 1]
    assert sum(b.count for b in batches) == 6


async def test_simulator_decides_a_keep_rule_from_the_outcomes_worst_k_at_run_end(bus, given, settings, staging):
    req = request(episodes=4, outputs=ev.OutputSpec(keep=keep.return_below(-1e9) | keep.worst(1)))
    out = await given.handle(Simulator(bus, settings, staging).on_sim_requested, req)
    assert kinds(out)[:3] == ["SimStarted", "EpisodeEnded", "EpisodeEnded"]
    ended = [e for e in out if isinstance(e, ev.EpisodeEnded)]
    decided = [e for e in out if isinstance(e, (ev.EpisodeKept, ev.EpisodeDiscarded))]
    assert sorted(d.episode for d in decided) == [0, 1, 2, 3]  # each episode once
    (kept,) = [d for d in decided if isinstance(d, ev.EpisodeKept)]
    lowest = min(ended, key=lambda e: (e.episode_return, e.episode))
    assert kept.episode == lowest.episode and kept.rule == "any of (return < -1e+09, worst 1)"
    assert kinds(out)[-3:] == ["EpisodeKept", "SceneSaved", "SimCompleted"]  # the group closes at run end
    for d in decided:  # each decision comes after its own episode ended
        assert out.index(d) > out.index(ended[d.episode])
        assert d.episode_return == ended[d.episode].episode_return and d.seed == ended[d.episode].seed


async def test_simulator_refuses_a_producer_keep_rule(bus, given, settings, staging):
    req = request(outputs=ev.OutputSpec(keep=keep.Producer(name="mine")))
    (failed,) = await given.handle(Simulator(bus, settings, staging).on_sim_requested, req)
    assert isinstance(failed, ev.SimFailed) and failed.code == "bad_request" and failed.field == "outputs.keep"


async def test_simulator_refuses_a_request_over_a_limit_naming_the_field(bus, given, settings, staging):
    (failed,) = await given.handle(Simulator(bus, settings, staging).on_sim_requested,
                                   request(render=ev.RenderSpec(width=128, height=H)))
    assert isinstance(failed, ev.SimFailed) and failed.code == "limit_exceeded" and failed.field == "render.width"
    assert bus.frames == []


async def test_simulator_refuses_a_second_request_for_a_finished_run(bus, given, settings, staging):
    sim = Simulator(bus, settings, staging)
    req = request(episodes=1, duration_s=0.1)
    await given.handle(sim.on_sim_requested, req)
    again = ev.SimRequested(**{**{f: getattr(req, f) for f in req.__struct_fields__}, "event_id": "another"})
    (dead,) = await given.handle(sim.on_sim_requested, again)
    assert isinstance(dead, ev.DeadLettered) and "duplicate SimRequested" in dead.reason
    assert dead.run_id == "unknown"  # not under the run's own id: that would mark the finished run failed


async def test_simulator_redelivery_of_a_finished_attempt_only_acks(bus, given, settings, staging):
    """The run finished but the ack was lost: the redelivered request produces nothing."""
    sim = Simulator(bus, settings, staging)
    req = request(episodes=1, duration_s=0.1)
    first = await given.handle(sim.on_sim_requested, req)
    seq = next(s for s, _, e in bus.log if e.event_id == req.event_id)
    assert kinds(first)[-1] == "SimCompleted"
    assert await given.handle(sim.on_sim_requested, req, attempt=2, stream_seq=seq) == []


# --- encoder ---------------------------------------------------------------------------------------


async def publish_run(bus, *, episodes=2, frames=4, abort_at: int | None = None,
                      outputs=ev.OutputSpec(layout="both")) -> ev.SimStarted:
    """A run's SimStarted and frames, as any producer publishes them (the simulator's RunPublisher)."""
    pub = RunPublisher(bus, run_id="enc-1", attempt=1, session="s", fps=FPS, frame_width=W, frame_height=H)
    started = pub.started(scene="synthetic", episodes=episodes, frames_per_episode=[frames] * episodes, width=W,
                          height=H, outputs=outputs)
    for episode in range(episodes):
        if episode == abort_at:
            await pub.frame(episode, 0, 0.0, bytes(W * H * 3), {"k": 0})
            await pub.abort(episode)
            return started
        for k in range(frames):
            await pub.frame(episode, k, k / FPS, np.full((H, W, 3), 30 * k + episode, np.uint8).tobytes(), {"k": k})
        await pub.end_episode(episode, EpisodeOutcome(seed=episode, steps=frames, frames=frames))
    return started


async def test_encoder_stages_each_video_then_telemetry_and_drops_the_frames(bus, given, settings, staging):
    started = await publish_run(bus)
    out = await given.handle(Encoder(bus, settings, staging).on_sim_started, started)
    assert kinds(out) == ["VideoAvailable", "VideoAvailable", "VideoAvailable", "TelemetryStaged"]
    assert [v.episode for v in out[:3]] == [0, 1, None]
    assert [v.frames for v in out[:3]] == [4, 4, 8]
    for v in out[:3]:
        async with staging.local(v.staged) as p:
            assert hashlib.sha256(Path(p).read_bytes()).hexdigest() == v.sha256
    assert out[3].rows == 8
    assert bus.frames == []  # purged once the videos are staged


async def test_encoder_lets_an_aborted_attempt_go_after_the_episodes_it_finished(bus, given, settings, staging):
    started = await publish_run(bus, abort_at=1)
    out = await given.handle(Encoder(bus, settings, staging).on_sim_started, started)
    assert kinds(out) == ["VideoAvailable"] and out[0].episode == 0  # no concatenated video, no telemetry
    assert bus.frames == []


async def test_encoder_holds_each_candidate_of_a_run_with_a_keep_rule(bus, given, settings, staging):
    started = await publish_run(bus, outputs=ev.OutputSpec(keep=keep.failures()))
    out = await given.handle(Encoder(bus, settings, staging).on_sim_started, started)
    assert kinds(out) == ["VideoHeld", "VideoHeld", "TelemetryStaged"]
    assert [v.event_id for v in out[:2]] == ["held-enc-1-1-0-mp4", "held-enc-1-1-1-mp4"]
    for v in out[:2]:
        async with staging.local(v.staged) as p:  # encoded and staged while the decision is pending
            assert hashlib.sha256(Path(p).read_bytes()).hexdigest() == v.sha256


async def test_encoder_refuses_options_it_cannot_honour_before_reading_frames(bus, given, settings, staging):
    started = await publish_run(bus, outputs=ev.OutputSpec(crf=60))
    (failed,) = await given.handle(Encoder(bus, settings, staging).on_sim_started, started)
    assert isinstance(failed, ev.EncodeFailed) and "crf 60" in failed.message


# --- uploader --------------------------------------------------------------------------------------


async def staged_file(staging, name: str, data: bytes) -> str:
    work = staging.tempdir() / Path(name).name
    work.write_bytes(data)
    return await staging.put(name, work)


async def test_uploader_stores_then_deletes_the_staged_copy_once_the_fact_is_logged(given, staging, tmp_path):
    data = b"not really an mp4" * 100
    ref = await staged_file(staging, "up-1/1/0/episode-0000.mp4", data)
    video = ev.VideoAvailable(run_id="up-1", attempt=1, session="s", episode=0, format="mp4", staged=ref, frames=3,
                              fps=10.0, duration_s=0.3, width=W, height=H, codec="h264", bytes=len(data),
                              sha256=hashlib.sha256(data).hexdigest(), encode_ms=1.0)
    uploader = Uploader(LocalStore(tmp_path / "out"), staging)
    (stored,) = await given.handle(uploader.on_video_available, video)
    assert isinstance(stored, ev.ArtifactStored) and stored.kind == "video" and stored.staged == ref
    assert Path(stored.path).read_bytes() == data and stored.bytes == len(data)
    async with staging.local(ref):
        pass  # still staged: nothing is deleted before ArtifactStored is in the log
    assert await given.handle(uploader.on_artifact_stored, stored) == []
    with pytest.raises(FileNotFoundError):
        async with staging.local(ref):
            pass


def held_video(ref: str, data: bytes, episode: int = 0) -> ev.VideoHeld:
    return ev.VideoHeld(event_id=f"held-k-1-{episode}-mp4", run_id="k", attempt=1, session="s", episode=episode,
                        format="mp4", staged=ref, frames=3, fps=10.0, duration_s=0.3, width=W, height=H, codec="h264",
                        bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), encode_ms=1.0)


def decision(kept: bool, episode: int = 0, attempt: int = 1) -> ev.EpisodeKept | ev.EpisodeDiscarded:
    cls = ev.EpisodeKept if kept else ev.EpisodeDiscarded
    return cls(event_id=f"{'kept' if kept else 'discarded'}-k-{attempt}-{episode}", run_id="k", attempt=attempt,
               session="s", episode=episode, candidate=episode, rule="failures",
               reason="failures: terminated" if kept else "failures: not terminated")


@pytest.mark.parametrize("decided_first", [False, True], ids=["held-first", "decided-first"])
async def test_uploader_releases_a_kept_candidate_whichever_comes_first(bus, given, staging, tmp_path, decided_first):
    data = b"candidate" * 50
    ref = await staged_file(staging, "k/1/0/episode-0000.mp4", data)
    uploader = Uploader(LocalStore(tmp_path / "out"), staging, events=bus)
    held, kept = held_video(ref, data), decision(True)
    first, second = (kept, held) if decided_first else (held, kept)
    handler = {ev.VideoHeld: uploader.on_video_held, ev.EpisodeKept: uploader.on_episode_decided}
    assert await given.handle(handler[type(first)], first) == []  # waits for the other half
    (video,) = await given.handle(handler[type(second)], second)
    assert isinstance(video, ev.VideoAvailable) and video.event_id == "video-k-1-0-mp4"
    assert (video.staged, video.sha256, video.episode) == (ref, held.sha256, 0)
    (stored,) = await given.handle(uploader.on_video_available, video)
    assert stored.kind == "video" and Path(stored.path).read_bytes() == data


@pytest.mark.parametrize("decided_first", [False, True], ids=["held-first", "decided-first"])
async def test_uploader_deletes_a_discarded_candidate_and_stores_nothing(bus, given, staging, tmp_path, decided_first):
    data = b"candidate" * 50
    ref = await staged_file(staging, "k/1/0/episode-0000.mp4", data)
    uploader = Uploader(LocalStore(tmp_path / "out"), staging, events=bus)
    held, dropped = held_video(ref, data), decision(False)
    handler = {ev.VideoHeld: uploader.on_video_held, ev.EpisodeDiscarded: uploader.on_episode_decided}
    for e in ((dropped, held) if decided_first else (held, dropped)):
        assert await given.handle(handler[type(e)], e) == []
    with pytest.raises(FileNotFoundError):
        async with staging.local(ref):
            pass
    assert list((tmp_path / "out").rglob("*.mp4")) == []


async def test_uploader_pairs_a_decision_only_with_its_own_attempt_and_episode(bus, given, staging, tmp_path):
    data = b"candidate" * 50
    ref = await staged_file(staging, "k/1/1/episode-0001.mp4", data)
    uploader = Uploader(LocalStore(tmp_path / "out"), staging, events=bus)
    await given.handle(uploader.on_episode_decided, decision(False, episode=0))
    await given.handle(uploader.on_episode_decided, decision(False, episode=1, attempt=2))
    assert await given.handle(uploader.on_video_held, held_video(ref, data, episode=1)) == []
    async with staging.local(ref):
        pass  # still held: no decision for attempt 1, episode 1 yet


async def test_uploader_drops_what_a_dead_attempt_held_once_a_later_attempt_decides(bus, given, staging, tmp_path):
    data = b"candidate" * 50
    ref = await staged_file(staging, "k/1/0/episode-0000.mp4", data)
    uploader = Uploader(LocalStore(tmp_path / "out"), staging, events=bus)
    assert await given.handle(uploader.on_video_held, held_video(ref, data)) == []  # attempt 1 died undecided
    assert await given.handle(uploader.on_episode_decided, decision(True, attempt=2)) == []  # its own not yet held
    with pytest.raises(FileNotFoundError):
        async with staging.local(ref):
            pass


async def test_uploader_stores_the_report_of_a_completed_run(given, staging, tmp_path):
    done = ev.SimCompleted(run_id="up-2", attempt=1, episodes=1, frames=3, wall_s=1.0, session="s",
                           expected_artifacts=4, report={"scene": "cartpole"})
    (stored,) = await given.handle(Uploader(LocalStore(tmp_path / "out"), staging).on_sim_completed, done)
    assert stored.kind == "report" and stored.staged is None
    assert '"scene": "cartpole"' in Path(stored.path).read_text()


# --- retention -------------------------------------------------------------------------------------


async def stored_artifacts(store: LocalStore, tmp_path: Path, n: int, session: str = "s") -> list[ev.ArtifactStored]:
    out = []
    for i in range(n):
        src = tmp_path / f"v{i}.mp4"
        src.write_bytes(b"x" * (10 + i))
        key = f"simreel/{session}/run-{i}/0000/episode-0000.mp4"
        s = await store.put(key, src, content_type="video/mp4", metadata={})
        out.append(ev.ArtifactStored(run_id=f"run-{i}", kind="video", format="mp4", episode=0, session=session,
                                     key=key, url=s.url, path=s.path, bytes=s.bytes, sha256=s.sha256,
                                     content_type="video/mp4", ts=1000.0 + i))
    return out


async def test_retention_keeps_the_latest_and_announces_each_delete(bus, given, tmp_path):
    store = LocalStore(tmp_path / "out")
    index = ArtifactIndex()
    retention = Retention(store, index, Policy(keep_latest=2))
    arts = await stored_artifacts(store, tmp_path, 3)
    out = []
    for a in arts:
        out += await given.handle(retention.on_artifact_stored, a)
        index.apply_all(out)  # what the service's follower does with the log
    assert kinds(out) == ["ArtifactDeleted"] and out[0].key == arts[0].key and out[0].reason == "count"
    assert not Path(arts[0].path).exists() and Path(arts[2].path).exists()


def ended(run_id: str, episode_return: float, terminated: bool = False) -> ev.EpisodeEnded:
    return ev.EpisodeEnded(run_id=run_id, attempt=1, episode=0, seed=0, steps=10, frames=11, sim_time_s=1.0,
                           wall_s=1.0, episode_return=episode_return, terminated=terminated, truncated=not terminated)


async def test_retention_keeps_the_latest_and_besides_them_the_worst_and_the_failures(bus, given, tmp_path):
    store = LocalStore(tmp_path / "out")
    index = ArtifactIndex()
    retention = Retention(store, index, Policy(keep_latest=2), {"s": Policy(keep_latest=2, keep_worst=2,
                                                                            keep_failures=1)})
    arts = await stored_artifacts(store, tmp_path, 9)
    returns = [5.0, -9.0, 3.0, -7.0, 8.0, 1.0, 0.0, 2.0, 4.0]
    fell = {2, 5}  # run-5 is the latest failure among the older ones
    out = []
    for i, a in enumerate(arts):
        index.apply(ended(a.run_id, returns[i], terminated=i in fell))  # the episode ends before its video is stored
        out += await given.handle(retention.on_artifact_stored, a)
        index.apply_all(out)
    deleted = {int(d.run_id.split("-")[1]) for d in out}
    # latest 2: run-7, run-8; worst 2 of the rest: run-1 (-9), run-3 (-7); latest failure: run-5
    assert sorted(set(range(9)) - deleted) == [1, 3, 5, 7, 8]
    assert all(d.reason == "count" for d in out) and not Path(arts[0].path).exists() and Path(arts[1].path).exists()


async def test_retention_spares_a_video_whose_outcome_it_has_not_seen_yet(bus, given, tmp_path):
    store = LocalStore(tmp_path / "out")
    index = ArtifactIndex()
    retention = Retention(store, index, Policy(keep_latest=1, keep_worst=1))
    arts = await stored_artifacts(store, tmp_path, 3)
    index.apply(ended("run-1", 0.0))
    index.apply(ended("run-2", 0.0))
    out = []
    for a in arts:
        out += await given.handle(retention.on_artifact_stored, a)
    assert out == []  # run-0's outcome is unknown: not judged; run-1 is the worst of the older ones
    index.apply(ended("run-0", 5.0))
    (deleted,) = await retention.sweep()  # the next sweep judges it
    assert deleted.run_id == "run-0"


async def test_retention_deletes_a_whole_run_on_request(bus, given, tmp_path):
    store = LocalStore(tmp_path / "out")
    index = ArtifactIndex()
    retention = Retention(store, index, Policy())
    arts = await stored_artifacts(store, tmp_path, 2)
    for a in arts:
        assert await given.handle(retention.on_artifact_stored, a) == []
    (deleted,) = await given.handle(retention.on_delete_requested, ev.DeleteRequested(run_id="run-1"))
    assert deleted.key == arts[1].key and deleted.reason == "manual" and not Path(arts[1].path).exists()


async def test_retention_dry_run_says_what_it_would_delete_and_deletes_nothing(tmp_path):
    store = LocalStore(tmp_path / "out")
    arts = await stored_artifacts(store, tmp_path, 3)
    retention = Retention(store, ArtifactIndex().apply_all(arts), Policy(keep_latest=1), dry_run=True)
    would = await retention.enforce("s")
    assert sorted(d.key for d in would) == sorted(a.key for a in arts[:2])
    assert all(Path(a.path).exists() for a in arts)


@pytest.mark.parametrize("body,field,says", [
    ({"render": {"width": 100000}}, "render.width", "<= 4096"),
    ({"episodes": "three"}, "episodes", "Expected `int`, got `str`"),
])
def test_an_undecodable_request_with_a_readable_run_id_fails_on_its_own_run(body, field, says):
    import json

    from simreel.transport.bus import Delivery
    from simreel.services.simulator.handlers import refuse_undecodable_request

    data = json.dumps({"type": "SimRequested", "run_id": "plain-1", "scene": "cartpole", **body}).encode()
    with pytest.raises(Exception) as decoding:
        ev.decode(data)
    (failed,) = refuse_undecodable_request(data, decoding.value, Delivery("simreel.evt.sim.requested", 1, 9))
    assert isinstance(failed, ev.SimFailed) and failed.run_id == "plain-1" and failed.code == "bad_request"
    assert failed.field == field and says in failed.message


@pytest.mark.parametrize("data", [b"not json", b'{"type": "SimRequested", "run_id": "has spaces"}',
                                  b'{"type": "VideoAvailable", "run_id": "r1"}', b"[1, 2]"])
def test_without_a_readable_run_id_there_is_nobody_to_tell(data):
    from simreel.transport.bus import Delivery
    from simreel.services.simulator.handlers import refuse_undecodable_request

    assert refuse_undecodable_request(data, ValueError("x"), Delivery("simreel.evt.sim.requested", 1, 9)) == []
