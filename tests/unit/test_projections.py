"""A run's status is a fold over its events."""
from simreel.contract import events as ev
from simreel.readmodels.projections import RunState, fold_runs


def _stored(run, key):
    return ev.ArtifactStored(run_id=run, kind="video", format="mp4", session="s", key=key, url="file:///x", bytes=1,
                             sha256="0", content_type="video/mp4")


def _started(run, attempt):
    return ev.SimStarted(run_id=run, attempt=attempt, scene="x", episodes=1, frames_per_episode=[3], fps=30,
                         width=16, height=16, cameras=[], physics_dt=0.002, gl_backend="egl", gl_renderer="r",
                         session="s", outputs=ev.OutputSpec())


def test_completed_only_when_every_expected_artifact_is_stored():
    s = RunState("r1")
    s.apply(_started("r1", 1))
    s.apply(ev.SimCompleted(run_id="r1", attempt=1, episodes=1, frames=3, wall_s=1, session="s", expected_artifacts=2))
    assert s.status == "storing"
    s.apply(_stored("r1", "a"))
    s.apply(_stored("r1", "a"))  # a duplicate fact does not count twice
    assert s.status == "storing"
    s.apply(_stored("r1", "b"))
    assert s.status == "completed" and s.finished


def test_failure_of_a_superseded_attempt_does_not_fail_the_run():
    s = RunState("r1")
    s.apply(_started("r1", 1))
    s.apply(_started("r1", 2))
    s.apply(ev.EncodeFailed(run_id="r1", attempt=1, message="no frames"))
    assert s.status == "running"
    s.apply(ev.EncodeFailed(run_id="r1", attempt=2, message="boom"))
    assert s.status == "failed"


def test_fold_runs_groups_by_run_and_skips_unattributable_dead_letters():
    runs = fold_runs([ev.SimRequested(run_id="a", scene="cartpole"), ev.SimRequested(run_id="b", scene="boxes"),
                      ev.SimFailed(run_id="b", code="scene_invalid", message="x"),
                      ev.DeadLettered(service="simulator", subject="s", reason="junk")])
    assert set(runs) == {"a", "b"}
    assert runs["a"].status == "queued" and runs["b"].status == "failed"


def test_runs_index_pages_newest_first_and_follows_changes():
    from simreel.readmodels.projections import RunFilter, RunsIndex

    idx = RunsIndex()
    for i in range(120):
        idx.apply(ev.SimRequested(run_id=f"r{i:03d}", scene="cartpole" if i % 2 else "boxes", session=f"s{i % 3}",
                                  tags={"k": str(i % 5)}, ts=1000.0 + i))
    total, page = idx.page(offset=0, limit=10)
    assert total == 120 and [r.run_id for r in page][:3] == ["r119", "r118", "r117"]
    total, page = idx.page(RunFilter(session="s0", scene="box", tag="k=0"), limit=100)
    assert total == len(page) == 4 and all(int(r.run_id[1:]) % 30 == 0 for r in page)
    idx.apply(ev.SimFailed(run_id="r000", code="scene_invalid", message="x"))
    assert [r.run_id for r in idx.page(RunFilter(status="failed"))[1]] == ["r000"]
    assert idx.apply(ev.RecorderAnnounced(run_id="rec", session="s", trigger="t")) is None
    assert "rec" not in idx.runs and "rec" not in fold_runs([ev.RecorderAnnounced(run_id="rec", session="s", trigger="t")])


def _decided(kept: bool, run: str, attempt: int, episode: int):
    cls = ev.EpisodeKept if kept else ev.EpisodeDiscarded
    return cls(run_id=run, attempt=attempt, session="s", episode=episode, candidate=episode, rule="r", reason="why")


def test_a_discarded_episode_takes_its_videos_off_the_expected_count():
    s = RunState("r1")
    started = _started("r1", 1)
    s.apply(ev.SimStarted(**{**{f: getattr(started, f) for f in started.__struct_fields__},
                             "episodes": 2, "outputs": ev.OutputSpec(formats=["mp4", "gif"])}))
    # 2 episodes × (mp4 + gif) + report + telemetry
    s.apply(ev.SimCompleted(run_id="r1", attempt=1, episodes=2, frames=6, wall_s=1, session="s", expected_artifacts=6))
    for key in ("report", "telemetry", "ep0.mp4", "ep0.gif"):
        s.apply(_stored("r1", key))
    assert s.status == "storing"  # episode 1 is undecided: its videos may still come
    s.apply(_decided(False, "r1", 0, 1))  # a superseded attempt's decision counts for nothing
    assert s.status == "storing"
    s.apply(_decided(False, "r1", 1, 1))
    assert s.status == "completed" and s.expected_now == 4
    assert s.summary()["discarded"] == 1


def test_derived_figures_live_on_the_run():
    req = ev.SimRequested(run_id="r1", scene="cartpole", episodes=2,
                          outputs=ev.OutputSpec(formats=["mp4", "gif"], layout="per-episode"))
    s = RunState("r1")
    assert (s.expected_videos, s.latest_attempt, s.finished) == (None, 0, False)
    s.apply(req)
    assert s.expected_videos == 4  # 2 formats x 2 episodes, known from the request
    s.apply(_started("r1", 1))
    assert s.latest_attempt == 1 and s.expected_videos == 1  # the start names what runs: 1 episode, mp4
    s.apply(ev.SimCompleted(run_id="r1", attempt=1, episodes=1, frames=3, wall_s=1, session="s", expected_artifacts=2))
    s.apply(_stored("r1", "a"))
    s.apply(_stored("r1", "b"))
    s.apply(ev.ArtifactDeleted(run_id="r1", session="s", key="a", bucket="", reason="manual"))
    assert (s.stored_artifacts, s.live_artifact_count, s.status) == (2, 1, "completed")
    row = s.summary()
    assert (row["artifacts"], row["stored_artifacts"], row["expected_videos"], row["finished"], row["attempt"]) == \
        (1, 2, 1, True, 1)
