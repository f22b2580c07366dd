"""Capture controls of a live recorder: which episodes get recorded once a ui has spoken."""
from simreel.capture import CaptureState, describe_trigger
from simreel.gym import capped_cubic_video_schedule


def recorded(state: CaptureState, episodes, trigger, controls=None):
    """Episodes recorded; `controls` maps an episode to the control applied at its boundary."""
    out = []
    for e in episodes:
        for action, every in (controls or {}).get(e, []):
            state.apply(action, every, e)
        if state.decide(e, trigger):
            out.append(e)
    return out


def test_without_controls_the_trigger_decides_and_is_asked_once_per_episode():
    asked = []

    def trigger(e):
        asked.append(e)
        return e % 3 == 0

    s = CaptureState()
    out = []
    for e in range(7):
        if s.decide(e, trigger):
            out.append(e)
        s.peek(e + 1, trigger)  # the announcement's look-ahead
    assert out == [0, 3, 6]
    assert asked == list(range(8))


def test_record_next_adds_one_episode_then_the_trigger_resumes():
    assert recorded(CaptureState(), range(6), lambda e: e == 0, {2: [("record_next", None)]}) == [0, 2]


def test_every_counts_from_the_boundary_where_it_was_applied():
    assert recorded(CaptureState(), range(10), lambda e: False, {3: [("every", 3)]}) == [3, 6, 9]


def test_off_then_record_next_records_exactly_one():
    assert recorded(CaptureState(), range(6), lambda e: True, {1: [("off", None)], 4: [("record_next", None)]}) \
        == [0, 4]


def test_stop_is_final_even_after_later_controls():
    s = CaptureState()
    assert recorded(s, range(6), lambda e: True, {2: [("stop", None)], 3: [("record_next", None), ("every", 1)]}) \
        == [0, 1]
    assert s.describe("x") == "stopped"


def test_descriptions():
    assert describe_trigger(capped_cubic_video_schedule, None).startswith("episodes 0, 1, 8, 27")
    assert describe_trigger(lambda e: True, None, 50) == "custom episode_trigger; 50 frames per video"
    s = CaptureState()
    s.apply("every", 2, 0)
    assert s.describe("custom") == "every 2 episodes"
