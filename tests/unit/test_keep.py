"""Keep rules: given these outcomes in this order, these episodes are kept (and why the others are not)."""
from __future__ import annotations

import msgspec
import pytest

from simreel.contract import events as ev
from simreel.contract import keep as K


def outcomes(returns, terminated=()):
    return [K.Outcome(index=i, seed=100 + i, length=10, episode_return=float(r), terminated=i in terminated,
                      truncated=i not in terminated) for i, r in enumerate(returns)]


def kept(rule, returns, terminated=()):
    return [d.outcome.index for d in K.decide_all(rule, outcomes(returns, terminated)) if d.kept]


def test_failures_keeps_terminated_episodes_at_once():
    k = K.Keeper(K.failures())
    (d,) = k.push(K.Outcome(index=0, terminated=True))
    assert d.kept and d.reason == "failures: terminated"
    (d,) = k.push(K.Outcome(index=1, truncated=True))
    assert not d.kept and "time limit" in d.reason
    assert k.pending == []


def test_return_below_and_above():
    assert kept(K.return_below(0), [1, -1, 0, -5]) == [1, 3]
    assert kept(K.return_above(0), [1, -1, 0, 5]) == [0, 3]


def test_new_best_keeps_each_record_breaker():
    assert kept(K.new_best(), [1, 0, 2, 2, 5, 3]) == [0, 2, 4]


def test_every_nth_of_all_and_of_a_rule():
    assert kept(K.every(3), range(8)) == [0, 3, 6]
    # every 2nd failure: failures are 1, 2, 5, 7 -> the 1st and 3rd of them
    assert kept(K.every(2, of=K.failures()), [0] * 8, terminated={1, 2, 5, 7}) == [1, 5]


def test_worst_k_over_life_holds_at_most_k_and_decides_at_close():
    k = K.Keeper(K.worst(2))
    decided = []
    for o in outcomes([5, 1, 3, -2, 7, 0]):
        decided += k.push(o)
        assert len(k.pending) <= 2  # a candidate pushed out of the k is discarded at once
    assert sorted(d.outcome.index for d in decided) == [0, 1, 2, 4]
    assert not any(d.kept for d in decided)
    final = k.close()
    assert [(d.outcome.index, d.kept) for d in final] == [(3, True), (5, True)]
    assert "among the 2 lowest" in final[0].reason


def test_best_k_per_window_decides_when_each_window_closes():
    k = K.Keeper(K.best(1, window=3))
    assert [(d.outcome.index, d.kept) for d in k.push(outcomes([1])[0])] == []
    os = outcomes([1, 9, 4, 2, 8, 3, 7])
    got = [(d.outcome.index, d.kept) for o in os[1:3] for d in k.push(o)]
    assert (1, True) in got and (0, False) in got and (2, False) in got  # window 0-2 closed
    assert kept(K.best(1, window=3), [1, 9, 4, 2, 8, 3, 7]) == [1, 4, 6]  # the last, partial window at close


def test_ties_go_to_the_earlier_episode_and_nan_never_ranks():
    assert kept(K.worst(1), [2, 1, 1]) == [1]
    assert kept(K.best(1), [float("nan"), 0]) == [1]


def test_worst_among_failures():
    assert kept(K.worst(1, of=K.failures()), [-9, -1, -3, 0], terminated={1, 2}) == [2]


def test_any_keeps_failures_at_once_and_the_rest_when_their_group_closes():
    k = K.Keeper(K.failures() | K.worst(1))
    got = k.push(K.Outcome(index=0, episode_return=5, terminated=True))
    assert [(d.outcome.index, d.kept) for d in got] == [(0, True)]  # not held back by worst
    assert k.push(K.Outcome(index=1, episode_return=3)) == []
    got = k.push(K.Outcome(index=2, episode_return=1))
    assert [(d.outcome.index, d.kept) for d in got] == [(1, False)]
    assert [(d.outcome.index, d.kept) for d in k.close()] == [(2, True)]


def test_all_of_is_an_intersection():
    assert kept(K.return_below(0) & K.every(2), [-1, -1, 1, -1, 5]) == [0]  # every 2nd: 0, 2, 4
    assert kept(K.all_of(K.return_below(0), K.failures()), [-1, -1, 1], terminated={1, 2}) == [1]


def test_discard_reasons_name_every_rule_that_said_no():
    (d,) = K.decide_all(K.failures() | K.return_below(-10), outcomes([3]))
    assert not d.kept
    assert d.rule == "any of (failures, return < -10)"
    assert "failures: not terminated" in d.reason and "return < -10: return is 3" in d.reason


def test_a_callable_is_a_rule_decided_at_once():
    k = K.Keeper(lambda o: o.info.get("fell", False))
    assert [d.kept for d in k.push(K.Outcome(index=0, info={"fell": True}))] == [True]
    assert [d.kept for d in k.push(K.Outcome(index=1))] == [False]


def test_json_and_python_are_one_rule():
    rule = K.any_of(K.failures(), K.worst(5, window=100))
    wire = msgspec.json.encode(rule)
    assert msgspec.json.decode(wire) == {"rule": "any", "rules": [{"rule": "failures"},
                                                                  {"rule": "worst", "k": 5, "window": 100}]}
    assert K.decode(wire) == rule
    spec = msgspec.json.decode(b'{"keep": {"rule": "failures"}}', type=ev.OutputSpec)
    assert spec.keep == K.failures()
    returns = [3, -1, 4, -1, -5, 9, 2, 6]
    assert kept(K.decode(wire), returns, {2}) == kept(rule, returns, {2})


@pytest.mark.parametrize("doc,where", [
    (b'{"rule": "worst", "k": 0}', "$.k"),
    (b'{"rule": "worst", "k": 1001}', "$.k"),
    (b'{"rule": "every", "n": 2, "of": {"rule": "best", "k": 1}}', "must decide at the episode's end"),
    (b'{"rule": "fell"}', "Invalid value 'fell'"),
    (b'{"rule": "any", "rules": []}', "$.rules"),
])
def test_bad_rules_fail_with_the_place(doc, where):
    with pytest.raises(msgspec.ValidationError, match=None) as e:
        K.decode(doc)
    assert where in str(e.value)


def test_python_constructors_check_limits():
    with pytest.raises(ValueError, match=r"\$\.k"):
        K.worst(0)
    with pytest.raises(ValueError, match="must decide at the episode's end"):
        K.every(2, of=K.best(1))


def test_keep_needs_per_episode_videos():
    with pytest.raises(msgspec.ValidationError, match="per-episode"):
        msgspec.json.decode(b'{"layout": "concat", "keep": {"rule": "failures"}}', type=ev.OutputSpec)


def test_same_outcomes_same_decisions():
    rule = K.any_of(K.new_best(), K.every(3, of=K.failures()), K.best(2, window=5))
    os = outcomes([(i * 37) % 11 - 5 for i in range(40)], terminated=set(range(0, 40, 3)))
    a, b = K.decide_all(rule, os), K.decide_all(rule, os)
    assert [(d.outcome.index, d.kept, d.reason) for d in a] == [(d.outcome.index, d.kept, d.reason) for d in b]
    assert sorted(d.outcome.index for d in a) == list(range(40))  # every candidate decided exactly once


def test_each_episode_is_given_once():
    k = K.Keeper(K.failures())
    k.push(K.Outcome(index=0))
    with pytest.raises(ValueError):
        k.push(K.Outcome(index=0))


def test_describe():
    assert K.describe(K.every(2, of=K.failures())) == "every 2nd of (failures)"
    assert K.describe(K.best(3, window=50)) == "best 3 per 50"
    assert K.describe(K.new_best()) == "new best return"


def test_recorders_refuse_keep_where_there_are_no_whole_episodes(tmp_path):
    import gymnasium as gym

    from simreel.gym import RecordVideo
    from simreel.gym.vector import RecordVideo as VectorRecordVideo

    env = gym.make("CartPole-v1", render_mode="rgb_array")
    with pytest.raises(ValueError, match="whole episodes"):
        RecordVideo(env, str(tmp_path / "a"), step_trigger=lambda s: s % 10 == 0, keep=K.failures())
    with pytest.raises(ValueError, match="whole episodes"):
        RecordVideo(env, str(tmp_path / "b"), video_length=20, keep=K.failures())
    with pytest.raises(ValueError, match="per-episode"):
        RecordVideo(env, str(tmp_path / "c"), keep=K.failures(), outputs=ev.OutputSpec(layout="both"))
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync", render_mode="rgb_array")
    with pytest.raises(ValueError, match="per_env=True"):
        VectorRecordVideo(envs, str(tmp_path / "d"), keep=K.failures())
