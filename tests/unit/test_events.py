"""The wire contract: events decode with validation, errors point at the field, the schema is public."""
import json
import typing

import msgspec
import pytest

from simreel.contract import events as ev
from simreel.contract import keep
from simreel.contract import subjects


# One example of every event type, with optional fields set away from their defaults so that a field
# lost on the wire shows as an inequality.
_OUT = ev.OutputSpec(formats=["mp4", "gif"], layout="both", crf=30, telemetry=False)
EXAMPLES: list[ev.Event] = [
    ev.SimRequested(scene="cartpole", episodes=2, seeds=[1, 2], duration_s=1.5, policy="sine",
                    policy_params={"amp": 0.5}, render=ev.RenderSpec(width=320, height=240, fps=24),
                    outputs=_OUT, session="s1", tags={"k": "v"}, fail_on_blank=True),
    ev.SimStarted(run_id="r1", attempt=2, scene="cartpole", episodes=2, frames_per_episode=[30, 30], fps=15,
                  width=160, height=120, cameras=["a", "b"], views=2, physics_dt=0.002, gl_backend="egl",
                  gl_renderer="llvmpipe", session="s1", outputs=_OUT, frame_compression="zstd"),
    ev.EpisodeEnded(run_id="r1", attempt=1, episode=0, seed=1, steps=10, frames=3, sim_time_s=0.1, wall_s=0.2,
                    episode_return=-1.5, terminated=True, truncated=False, blank=True, warnings=["all black"]),
    ev.SimCompleted(run_id="r1", attempt=1, episodes=2, frames=60, wall_s=3.5, session="s1", expected_artifacts=5,
                    report={"episodes": [{"episode": 0}]}),
    ev.SimFailed(run_id="r1", attempt=3, code="scene_invalid", message="bad", field="scene"),
    ev.SceneSaved(run_id="r1", attempt=1, session="s1", staged="dir:r1/1/scene.xml", bytes=10, sha256="ab" * 32),
    ev.VideoAvailable(run_id="r1", attempt=1, session="s1", episode=None, camera="top", format="gif",
                      staged="obj:r1/1/all/all.gif", frames=60, fps=15, duration_s=4, width=160, height=120,
                      codec="gif", bytes=1234, sha256="cd" * 32, encode_ms=12.5,
                      spans=[ev.EpisodeSpan(episode=1, first_frame=30, frames=30, start_s=2.0)], warnings=["w"]),
    ev.VideoHeld(run_id="r1", attempt=1, session="s1", episode=2, camera=None, format="mp4",
                 staged="dir:r1/1/2/episode-0002.mp4", frames=30, fps=15, duration_s=2, width=160, height=120,
                 codec="h264", bytes=99, sha256="cd" * 32, encode_ms=3.5),
    ev.EpisodeKept(run_id="r1", attempt=1, session="s1", episode=2, candidate=7, rule="failures",
                   reason="failures: terminated", seed=4, steps=9, episode_return=-2.5, terminated=True,
                   truncated=False),
    ev.EpisodeDiscarded(run_id="r1", attempt=2, session="s1", episode=0, candidate=0, rule="worst 5",
                        reason="worst 5: return 3 is not among the 5 lowest", seed=None, steps=200,
                        episode_return=3.0, truncated=True),
    ev.TelemetryStaged(run_id="r1", attempt=1, session="s1", staged="dir:t", rows=60, bytes=999, sha256="ef" * 32),
    ev.EncodeFailed(run_id="r1", attempt=2, code="timeout", message="no frames for 30s"),
    ev.ArtifactStored(run_id="r1", kind="video", format="mp4", episode=3, camera="top", session="s1", bucket="b",
                      key="simreel/s1/r1/0003/episode-0003.mp4", url="https://x/y?sig", path=None,
                      expires_at=1.5e9, bytes=4321, sha256="01" * 32, content_type="video/mp4",
                      source_event_id="video-r1"),
    ev.StoreFailed(run_id="r1", code="store_failed", message="sha256 mismatch", key="k"),
    ev.ArtifactDeleted(run_id="r1", session="s", key="k", bucket="b", reason="bytes"),
    ev.DeleteRequested(run_id="r1", requested_by="ops"),
    ev.SceneFileDeleted(run_id="scene-files", sha256="ab" * 32, size=1024, unreferenced_s=604800.0),
    ev.RecorderAnnounced(run_id="rec-1", session="s", env_id="CartPole-v1", trigger="every 2 episodes",
                         episodes_seen=3, videos_recorded=2, recording_next=True, cadence=2, state="closed"),
    ev.CaptureControlRequested(run_id="rec-1", action="every", every=5, requested_by="ui"),
    ev.CaptureControlApplied(run_id="rec-1", request_event_id="x", action="every", every=5, episode=4),
    ev.KeepRuleRequested(run_id="rec-1", keep=keep.worst(3, window=50) | keep.failures(), requested_by="ui"),
    ev.KeepRuleApplied(run_id="rec-1", request_event_id="x", rule="failures", episode=7),
    ev.SimRequested(run_id="keep-1", scene="cartpole", episodes=5, outputs=ev.OutputSpec(keep=keep.best(2))),
    ev.DeadLettered(run_id="r1", service="encoder", subject="simreel.evt.sim.started.r1", reason="why",
                    deliveries=6, payload_preview="{"),
]


def test_every_event_type_has_an_example():
    assert {type(e) for e in EXAMPLES} == set(typing.get_args(ev.AnyEvent))


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_event_type_round_trips_through_the_one_decoder(event):
    data = ev.encode(event)
    assert json.loads(data)["type"] == type(event).__name__
    back = ev.decode(data)
    assert type(back) is type(event) and back == event
    subject = subjects.subject_for(event)
    assert subject.startswith("simreel.evt.")
    if not isinstance(event, ev.SimRequested):
        assert subject.endswith("." + event.run_id)


def test_return_field_is_named_return_on_the_wire():
    e = ev.EpisodeEnded(run_id="r1", attempt=1, episode=0, seed=1, steps=10, frames=3, sim_time_s=0.1, wall_s=0.2,
                        episode_return=2.5)
    assert json.loads(ev.encode(e))["return"] == 2.5


@pytest.mark.parametrize("body, where", [
    ({"type": "SimRequested", "scene": "x", "render": {"width": 99999}}, "$.render.width"),
    ({"type": "SimRequested", "scene": "x", "episodes": 0}, "$.episodes"),
    ({"type": "SimRequested", "scene": "x", "run_id": "a.b"}, "$.run_id"),
    ({"type": "SimRequested", "scene": "x", "outputs": {"formats": ["avi"]}}, "$.outputs.formats[0]"),
    ({"type": "Nope", "run_id": "x"}, "type"),
])
def test_bad_input_fails_in_the_decoder_with_the_path(body, where):
    with pytest.raises(msgspec.ValidationError) as info:
        ev.decode(json.dumps(body).encode())
    assert where in str(info.value)


def test_frames_are_msgpack_and_round_trip():
    b = ev.FrameBatch(run_id="r", attempt=1, episode=0, seq=0, first_index=0, count=1, width=16, height=16,
                      times=[0.0], frames=bytes(16 * 16 * 3))
    assert ev.decode_frames(ev.encode_frames(b)) == b


def test_subjects_put_the_run_last_so_one_filter_selects_a_run():
    e = ev.VideoAvailable(run_id="r9", attempt=1, session="s", episode=0, format="mp4", staged="dir:x", frames=1,
                          fps=30, duration_s=1, width=16, height=16, codec="libx264", bytes=1, sha256="0",
                          encode_ms=1)
    assert subjects.subject_for(e) == "simreel.evt.video.available.r9"
    dl = ev.DeadLettered(run_id="r9", service="encoder", subject="x", reason="y")
    assert subjects.subject_for(dl) == "simreel.evt.dead.encoder.r9"
    for s in (subjects.subject_for(e), subjects.subject_for(dl)):
        assert s.split(".")[:2] == ["simreel", "evt"] and len(s.split(".")) == 5 and s.endswith(".r9")


def test_json_schema_lists_the_public_events():
    schema = ev.json_schema()
    assert {"SimRequested", "VideoAvailable", "ArtifactStored"} <= set(schema["$defs"])
    width = schema["$defs"]["RenderSpec"]["properties"]["width"]
    assert width["maximum"] == 4096


def test_recorder_events_round_trip_and_live_under_the_recorder_id():
    rid = "rec-1"
    for e, subject in [
        (ev.RecorderAnnounced(run_id=rid, session="s", env_id="CartPole-v1", trigger="every 2 episodes",
                              episodes_seen=3, videos_recorded=2, recording_next=True, cadence=2),
         "simreel.evt.recorder.announced.rec-1"),
        (ev.CaptureControlRequested(run_id=rid, action="every", every=5), "simreel.evt.recorder.control.rec-1"),
        (ev.CaptureControlApplied(run_id=rid, request_event_id="x", action="off", episode=4),
         "simreel.evt.recorder.applied.rec-1"),
    ]:
        back = ev.decode(ev.encode(e))
        assert back == e and type(back) is type(e)
        assert subjects.subject_for(e) == subject
    assert subjects.recorder_control(rid) == "simreel.evt.recorder.control.rec-1"


@pytest.mark.parametrize("body, where", [
    ({"type": "CaptureControlRequested", "run_id": "r", "action": "pause"}, "$.action"),
    ({"type": "CaptureControlRequested", "run_id": "r", "action": "every", "every": 0}, "$.every"),
    ({"type": "RecorderAnnounced", "run_id": "r", "session": "s", "trigger": "t", "state": "gone"}, "$.state"),
])
def test_bad_capture_controls_fail_in_the_decoder(body, where):
    with pytest.raises(msgspec.ValidationError) as info:
        ev.decode(json.dumps(body).encode())
    assert where in str(info.value)
