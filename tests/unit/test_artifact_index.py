"""Retention decisions are a pure function of the artifact events and the policy."""
from simreel.contract import events as ev
from simreel.readmodels.artifact_index import Policy, ArtifactIndex


def _stored(key, ts, session="s", kind="video", size=100, run="r"):
    return ev.ArtifactStored(run_id=run, kind=kind, format="mp4", session=session, key=key, url="u", bytes=size,
                             sha256="0", content_type="video/mp4", ts=ts)


def test_keep_latest_n_per_session_deletes_the_oldest():
    idx = ArtifactIndex().apply_all([_stored("a", 1), _stored("b", 2), _stored("c", 3), _stored("x", 0, session="t")])
    victims = idx.victims("s", Policy(keep_latest=2), now=10)
    assert [(e.key, why) for e, why in victims] == [("a", "count")]
    assert idx.victims("t", Policy(keep_latest=2), now=10) == []


def test_counts_only_videos_and_per_kind():
    idx = ArtifactIndex().apply_all([_stored("r1", 1, kind="report"), _stored("v1", 2), _stored("g1", 3, kind="gif"),
                                      _stored("v2", 4), _stored("g2", 5, kind="gif")])
    assert sorted(e.key for e, _ in idx.victims("s", Policy(keep_latest=1), now=10)) == ["g1", "v1"]


def test_max_age_and_max_bytes():
    idx = ArtifactIndex().apply_all([_stored("old", 0, size=10), _stored("mid", 50, size=60), _stored("new", 90, size=60)])
    assert [e.key for e, why in idx.victims("s", Policy(max_age_s=60), now=100) if why == "age"] == ["old"]
    by_bytes = idx.victims("s", Policy(max_total_bytes=100), now=100)
    assert [(e.key, why) for e, why in by_bytes] == [("old", "bytes"), ("mid", "bytes")]


def test_deleted_events_remove_entries_and_replay_is_deterministic():
    events = [_stored("a", 1), _stored("b", 2), ev.ArtifactDeleted(run_id="r", session="s", key="a", reason="count"),
              _stored("c", 3)]
    one, two = ArtifactIndex().apply_all(events), ArtifactIndex().apply_all(events)
    assert one.snapshot() == two.snapshot()
    assert [k for k, *_ in one.snapshot()] == ["b", "c"]
    assert one.victims("s", Policy(), now=10) == []
