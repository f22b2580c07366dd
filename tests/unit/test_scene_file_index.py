"""Which scene files retention may delete: given these events, these files go (and only after the grace)."""
from simreel.contract import events as ev
from simreel.services.retention.scene_files import SceneFileIndex

A, B, C = "a" * 64, "b" * 64, "c" * 64


def _req(run: str, *digests: str) -> ev.SimRequested:
    return ev.SimRequested(run_id=run, scene="s.xml",
                           files={f"f{i}": ev.SceneFile(sha256=d, size=1) for i, d in enumerate(digests)})


def _stored(run: str, key: str) -> ev.ArtifactStored:
    return ev.ArtifactStored(run_id=run, kind="video", format="mp4", session="s", key=key, url="u", bytes=1,
                             sha256="x", content_type="video/mp4")


def _index(*events) -> SceneFileIndex:
    index = SceneFileIndex()
    for e in events:
        index.apply(e)
    return index


def test_files_of_a_running_or_stored_run_stay_and_the_rest_go_after_the_grace():
    index = _index(_req("r1", A), _req("r2", B), ev.SimFailed(run_id="r2", attempt=1, code="scene_invalid", message="x"))
    stored = {A: 1, B: 1, C: 1}
    assert index.victims(stored, now=100.0, grace_s=10) == []  # B and C are unreferenced from now on
    assert [v.sha256 for v in index.victims(stored, now=110.0, grace_s=10)] == [B, C]


def test_a_finished_run_keeps_its_files_while_any_artifact_is_stored():
    index = _index(_req("r1", A), _stored("r1", "k1"), _stored("r1", "k2"),
                   ev.SimCompleted(run_id="r1", attempt=1, episodes=1, frames=1, wall_s=1.0, session="s",
                                   expected_artifacts=2))
    assert index.victims({A: 1}, now=0.0, grace_s=0) == []
    index.apply(ev.ArtifactDeleted(run_id="r1", session="s", key="k1", reason="count"))
    assert index.victims({A: 1}, now=1.0, grace_s=0) == []
    index.apply(ev.ArtifactDeleted(run_id="r1", session="s", key="k2", reason="count"))
    (gone,) = index.victims({A: 1}, now=2.0, grace_s=0)
    assert gone.sha256 == A and gone.run_id == "scene-files"


def test_a_file_referenced_again_restarts_its_grace():
    index = _index()
    assert index.victims({A: 1}, now=0.0, grace_s=10) == []
    index.apply(_req("r9", A))
    assert index.victims({A: 1}, now=50.0, grace_s=10) == []
    index.apply(ev.SimFailed(run_id="r9", attempt=1, code="scene_invalid", message="x"))
    assert index.victims({A: 1}, now=55.0, grace_s=10) == []  # unreferenced since 55, not since 0
    assert [v.sha256 for v in index.victims({A: 1}, now=65.0, grace_s=10)] == [A]
