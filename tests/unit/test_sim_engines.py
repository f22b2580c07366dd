"""The render-engine interface: engines by name, by entry point and by module:factory; broken plug-ins
reported unavailable with their error; the GL engine and BatchRunner keep the rollout's rules."""
import hashlib
import os
import textwrap

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from simreel.sim import engines  # noqa: E402
from simreel.sim.batch import BatchRunner  # noqa: E402
from simreel.sim.engines.cameras import fixed_cameras  # noqa: E402
from simreel.sim.loader import resolve_scene  # noqa: E402
from simreel.sim.policies import make_policy  # noqa: E402
from simreel.sim.rollout import EpisodeRunner, make_camera, make_renderer  # noqa: E402

PLUGIN = '''
import numpy as np
from simreel.sim.engines import EngineInfo
from simreel.sim.engines.gl import GLEngine


class Flat(GLEngine):
    """A plug-in engine: the GL engine, renamed, painting world i with value 10 * (i + 1) on top."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.info = EngineInfo(engine="flat", device="test", renderer="flat painter")

    def render(self, out):
        super().render(out)
        out[:, :4] = (10 * (np.arange(self.worlds) + 1)).astype(np.uint8)[:, None, None, None]


def create(model, *, width, height, cameras, worlds, quality, options):
    return Flat(model, width=width, height=height, cameras=cameras, worlds=worlds, quality=quality)


def refuses(model, **kw):
    raise RuntimeError("no accelerator on this host")
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A real installed distribution (dist-info with entry_points.txt) on sys.path: importlib.metadata
    finds it exactly as it finds a pip-installed plug-in."""
    (tmp_path / "simreel_flat_engine.py").write_text(PLUGIN)
    (tmp_path / "simreel_broken_engine.py").write_text("raise ImportError('libmissing.so: cannot open shared object')\n")
    info = tmp_path / "simreel_test_engines-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: simreel-test-engines\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [simreel.render_engines]
        flat = simreel_flat_engine:create
        broken = simreel_broken_engine:create
        refusing = simreel_flat_engine:refuses
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def model():
    return resolve_scene("cartpole")[0]


def test_plugin_found_by_entry_point_and_by_module_path(plugin_dir):
    assert {"gl", "mjwarp", "flat", "broken"} <= set(engines.names())
    for name in ("flat", "simreel_flat_engine:create"):
        eng = engines.create(name, model(), width=32, height=24, worlds=2, quality="fast")
        try:
            assert eng.info.engine == "flat" and eng.frame_shape == (24, 32, 3)
            eng.reset([0, 1])
            out = np.zeros((2, *eng.frame_shape), np.uint8)
            eng.render(out)
            assert out[0, 0, 0, 0] == 10 and out[1, 0, 0, 0] == 20  # the plug-in's own render ran
        finally:
            eng.close()


@pytest.mark.parametrize("name, words", [
    ("broken", ["broken", "unavailable", "ImportError", "libmissing.so"]),
    ("refusing", ["refusing", "unavailable", "no accelerator on this host"]),
    ("simreel_broken_engine:create", ["unavailable", "libmissing.so"]),
    ("no_such_module_xyz:create", ["unavailable", "No module named"]),
    ("simreel_flat_engine:nothing", ["unavailable", "nothing"]),
    ("nonesuch", ["no such engine", "gl", "mjwarp"]),
])
def test_broken_plugins_are_reported_unavailable_with_their_error(plugin_dir, name, words):
    with pytest.raises(engines.EngineUnavailable) as exc:
        engines.create(name, model(), width=32, height=24)
    for w in words:
        assert w in str(exc.value)


def test_gl_engine_renders_the_same_pixels_as_the_episode_runner():
    m = model()
    policy = "sine"
    ref = []
    with EpisodeRunner(m, width=64, height=48, fps=30, quality="fast") as runner:
        runner.run_episode(seed=3, policy=make_policy(policy, m, seed=3), duration_s=0.2,
                           on_frame=lambda f: ref.append(hashlib.blake2b(f.pixels).hexdigest()))
    eng = engines.create("gl", m, width=64, height=48, worlds=2, quality="fast")
    got: dict[int, list[str]] = {0: [], 1: []}
    try:
        summaries = BatchRunner(eng, fps=30).run(
            seeds=[3, 4], policies=[make_policy(policy, m, seed=s) for s in (3, 4)], duration_s=0.2,
            on_frame=lambda w, f: got[w].append(hashlib.blake2b(f.pixels).hexdigest()))
    finally:
        eng.close()
    assert got[0] == ref and len(ref) == 6
    assert got[1] != ref
    assert [s.frames for s in summaries] == [6, 6] and summaries[0].seed == 3


def test_batch_frames_are_taken_at_exactly_k_over_fps_for_every_world():
    m = model()
    eng = engines.create("gl", m, width=32, height=24, worlds=3, quality="fast")
    seen = []
    try:
        BatchRunner(eng, fps=30).run(seeds=[0, 1, 2], policies=[make_policy("zero", m, seed=0)] * 3,
                                     max_steps=101, on_frame=lambda w, f: seen.append((w, f.index, f.t, f.step)))
    finally:
        eng.close()
    # 101 steps of 2 ms = 0.202 s: frames k with k/30 <= 0.202, i.e. k = 0..6, each at step ceil(k*50/3)
    assert [(w, k) for w, k, _, _ in seen] == [(w, k) for k in range(7) for w in range(3)]
    assert all(t == k / 30 and step == -(-k * 50 // 3) for _, k, t, step in seen)


def test_free_camera_becomes_a_world_camera_with_the_same_image():
    m = model()
    free = {"distance": 3.0, "azimuth": 60.0, "elevation": -25.0, "lookat": [0.0, 0.0, 0.5]}
    m2, ids = fixed_cameras(m, [free, None])
    assert m2.ncam == m.ncam + 1 and ids[1] == make_camera(m2, None).fixedcamid
    images = []
    for mm, cam in ((m, make_camera(m, free)), (m2, ids[0])):
        import mujoco

        r = make_renderer(mm, 64, 48, "fast")
        d = mujoco.MjData(mm)
        mujoco.mj_forward(mm, d)
        r.update_scene(d, camera=cam)
        images.append(r.render().copy())
        r.close()
    assert images[0].mean() > 10
    assert np.abs(images[0].astype(int) - images[1]).mean() < 1.0


def test_run_batched_runs_episodes_in_batches_of_max_worlds_and_drops_the_padding():
    from simreel.sim.batch import run_batched

    m = model()
    frames, ended, started = {}, [], []
    run_batched("gl", m, width=32, height=24, fps=30, cameras=[None], quality="fast", options={},
                seeds=[7, 8, 9, 10, 11], make_policy=lambda mm, s: make_policy("sine", mm, seed=s),
                duration_s=0.1, max_steps=None, max_worlds=2, on_started=started.append,
                on_frame=lambda e, f: frames.setdefault(e, []).append((f.index, hashlib.blake2b(f.pixels).hexdigest())),
                on_episode=lambda e, s: ended.append((e, s.seed, s.frames)))
    assert [i.engine for i in started] == ["gl"]
    assert ended == [(0, 7, 3), (1, 8, 3), (2, 9, 3), (3, 10, 3), (4, 11, 3)]
    assert sorted(frames) == [0, 1, 2, 3, 4] and all([k for k, _ in v] == [0, 1, 2] for v in frames.values())
    assert frames[0] != frames[1]
