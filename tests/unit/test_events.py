"""The wire contract: events decode with validation, errors point at the field, the schema is public."""
import json

import msgspec
import pytest

from simreel import events as ev
from simreel import subjects


def test_round_trip_every_event_type_through_the_one_decoder():
    req = ev.SimRequested(scene="cartpole", episodes=2, seeds=[1, 2])
    for e in [
        req,
        ev.SimFailed(run_id=req.run_id, code="scene_invalid", message="bad"),
        ev.EpisodeEnded(run_id="r1", attempt=1, episode=0, seed=1, steps=10, frames=3, sim_time_s=0.1, wall_s=0.2,
                        episode_return=-1.5),
        ev.ArtifactDeleted(run_id="r1", session="s", key="k", reason="count"),
    ]:
        back = ev.decode(ev.encode(e))
        assert back == e and type(back) is type(e)


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
