"""Depth and segmentation streams: what is stored reads back as what mujoco.Renderer gave.

The geometry test renders a scene whose answer is known (a floor 2 m below a camera looking straight
down, a 0.4 m box on it), checks mujoco.Renderer's own depth against that geometry, then checks that
the runner's stored FFV1 files decode to the renderer's depth within the stated quantisation and to
its segmentation ids pixel for pixel.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import msgspec
import mujoco
import numpy as np
import pytest

from simreel.contract import events as ev
from simreel.contract import outputs, streams
from simreel.runtime.config import Limits, Settings
from simreel.media.colormap import VIRIDIS, DepthColours, segmentation_rgb
from simreel.media.lossless import LosslessWriter, read_frames
from simreel.services.encoder.handlers import Encoder
from simreel.services.simulator.handlers import Simulator
from simreel.sim import engines as sim_engines
from simreel.sim import perception
from simreel.sim.policies import make_policy
from simreel.sim.rollout import EpisodeRunner

W, H = 64, 48
FLOOR_M, BOX_HALF = 2.0, 0.2
# A camera 2 m above the floor looking straight down (a camera looks along its -z axis), a box of
# 0.4 m on the floor under it: the floor is 2 m away, the box's top 1.6 m.
KNOWN = f"""<mujoco><visual><global offwidth="{W}" offheight="{H}"/></visual>
<worldbody><light pos="0 0 3"/>
<camera name="down" pos="0 0 {FLOOR_M}" fovy="45"/>
<geom name="floor" type="plane" size="5 5 .1" rgba=".5 .5 .5 1"/>
<body name="crate" pos="0 0 {BOX_HALF}"><geom name="crate" type="box" size="{BOX_HALF} {BOX_HALF} {BOX_HALF}"
 rgba=".8 .3 .2 1"/></body></worldbody></mujoco>"""


def render_known(tmp_path: Path):
    """The runner's stored depth and segmentation files of one frame, and mujoco.Renderer's own."""
    model = mujoco.MjModel.from_xml_string(KNOWN)
    runner = EpisodeRunner(model, width=W, height=H, fps=10, camera="down", streams=("rgb", "depth", "segmentation"))
    writers = {"depth": LosslessWriter(tmp_path / "d.mkv", width=W, height=H, fps=10, pix_fmt="gray16le"),
               "segmentation": LosslessWriter(tmp_path / "s.mkv", width=W, height=H, fps=10, pix_fmt="bgra")}
    try:
        runner.run_episode(seed=0, policy=make_policy("zero", model, seed=0), duration_s=0.1,
                           on_frame=lambda f: [w.write(f.planes[k]) for k, w in writers.items()])
        for w in writers.values():
            w.close()
    finally:
        runner.close()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)  # the box has no joint: every frame shows this state
    with mujoco.Renderer(model, height=H, width=W) as r:
        r.update_scene(data, camera="down")
        r.enable_depth_rendering()
        depth = r.render().copy()
        r.enable_segmentation_rendering()
        seg = r.render().copy()
    return model, read_frames(tmp_path / "d.mkv"), read_frames(tmp_path / "s.mkv"), depth, seg


def test_stored_depth_and_ids_read_back_as_the_renderers_own(tmp_path):
    model, stored_depth, stored_seg, depth, seg = render_known(tmp_path)
    crate = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "crate")
    floor = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "floor")
    on_crate = (seg[..., 0] == crate) & (seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM)
    on_floor = (seg[..., 0] == floor) & (seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM)

    # the renderer itself against the geometry: floor 2 m, box top 1.6 m, box of the projected size
    assert on_crate.any() and on_floor.any() and (on_crate | on_floor).all()
    assert np.allclose(depth[on_floor], FLOOR_M, atol=2e-3)
    assert np.allclose(depth[on_crate], FLOOR_M - 2 * BOX_HALF, atol=2e-3)
    side_px = 2 * BOX_HALF / (FLOOR_M - 2 * BOX_HALF) / math.tan(math.radians(45 / 2)) * H / 2
    rows = np.flatnonzero(on_crate.any(axis=1))
    assert abs(len(rows) - side_px) <= 2

    assert len(stored_depth) == len(stored_seg) == 1
    metres = streams.depth_metres(stored_depth[0])
    assert stored_depth[0].dtype == np.uint16 and stored_depth[0].shape == (H, W)
    assert np.abs(metres - depth).max() <= streams.DEPTH_SCALE_M / 2 + 1e-6  # the stated quantisation
    ids = streams.unpack_segmentation(stored_seg[0])
    assert np.array_equal(ids, seg)  # pixel for pixel


def test_depth_beyond_the_format_is_saturated_and_reads_back_as_inf():
    q = streams.quantise_depth(np.array([0.0, 0.0004, 0.0006, 1.2345, 65.5349, 65.536, 250.0]))
    assert q.tolist() == [0, 0, 1, 1234, 65535, 65535, 65535] or q.tolist() == [0, 0, 1, 1235, 65535, 65535, 65535]
    back = streams.depth_metres(q)
    assert np.isinf(back[-1]) and back[3] == pytest.approx(1.2345, abs=5e-4)


def test_segmentation_packing_round_trips_every_id_and_type():
    seg = np.stack(np.meshgrid(np.arange(-1, 65534, 97), np.arange(-1, 40)), -1).astype(np.int32)
    packed = streams.pack_segmentation(seg)
    assert packed.dtype == np.uint8 and packed.shape == seg.shape[:-1] + (4,)
    assert np.array_equal(streams.unpack_segmentation(packed), seg)
    assert (packed[(seg[..., 0] == -1) & (seg[..., 1] == -1)] == 0).all()  # nothing = zeros
    with pytest.raises(ValueError, match="do not fit"):
        streams.pack_segmentation(np.array([[[70000, 5]]], np.int32))


def test_viridis_gets_lighter_from_near_to_far_and_the_range_is_fixed():
    lum = VIRIDIS.astype(float) @ [0.2126, 0.7152, 0.0722]
    assert (np.diff(lum[::4]) > 0).all() and np.diff(lum).min() > -1  # rising, but for rounding to bytes
    colours = DepthColours(1.0, 2.0)
    q = streams.quantise_depth(np.array([0.5, 1.0, 1.5, 2.0, 3.0, 1000.0]))
    out = colours(q)
    assert (out[0] == VIRIDIS[0]).all() and (out[1] == VIRIDIS[0]).all()
    assert (out[3] == VIRIDIS[255]).all() and (out[4] == VIRIDIS[255]).all()
    assert (out[5] == 0).all()  # beyond what the format holds: black


def test_an_objects_colour_follows_its_name_not_its_id():
    a = ev.Perception(objects={"geom": ["floor", "crate"]}, object_types={"geom": 5})
    b = ev.Perception(objects={"geom": ["lamp", "floor", "crate"]}, object_types={"geom": 5})
    legend_a = {e["name"]: e["colour"] for e in streams.legend(a)}
    legend_b = {e["name"]: e["colour"] for e in streams.legend(b)}
    assert legend_a["crate"] == legend_b["crate"] and legend_a["floor"] == legend_b["floor"]
    assert legend_a["crate"] != legend_a["floor"]
    seg = streams.pack_segmentation(np.array([[[-1, -1], [1, 5], [2, 5]]], np.int32))
    rgb = segmentation_rgb(seg, streams.id_colours(b))
    assert (rgb[0, 0] == 0).all()
    assert "#%02x%02x%02x" % tuple(rgb[0, 1]) == legend_b["floor"]
    assert "#%02x%02x%02x" % tuple(rgb[0, 2]) == legend_b["crate"]


def test_the_same_frames_give_the_same_lossless_file(tmp_path):
    frames = [streams.quantise_depth(np.linspace(0.5, 3.0, W * H).reshape(H, W) + k) for k in range(5)]
    digests = []
    for name in ("a.mkv", "b.mkv"):
        w = LosslessWriter(tmp_path / name, width=W, height=H, fps=15, pix_fmt="gray16le")
        for f in frames:
            w.write(f.tobytes())
        digests.append(w.close().sha256)
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digests[-1]
    assert digests[0] == digests[1]
    assert all(np.array_equal(a, b) for a, b in zip(read_frames(tmp_path / "a.mkv"), frames))


def test_streams_are_validated_in_the_request_and_counted_in_the_outputs():
    with pytest.raises(msgspec.ValidationError, match=r"render.streams"):
        ev.decode(b'{"type":"SimRequested","scene":"cartpole","render":{"streams":["rgb","normals"]}}')
    assert streams.check_streams(["rgb", "depth", "depth"]) == "a stream is named twice"
    assert "must be one of" in streams.check_streams(["depth"])
    req = ev.SimRequested(scene="cartpole", episodes=2,
                          render=ev.RenderSpec(streams=["rgb", "depth", "segmentation"], cameras=["a", "b"]),
                          outputs=ev.OutputSpec(formats=["mp4", "gif"], layout="both"))
    assert outputs.video_outputs(req) == (2 + 2 + 2) * (2 + 1) * 2
    assert outputs.video_file_name(3, "mkv", "a", "depth") == "episode-0003-a-depth.mkv"
    assert outputs.artifact_kind("segmentation", "mp4") == "segmentation_preview"
    assert outputs.artifact_kind("depth", "mkv") == "depth"


# --- through the simulator's and the encoder's handlers ----------------------------------------------


@pytest.fixture
def settings(tmp_path):
    return Settings(staging="dir", staging_dir=tmp_path / "staging", frame_idle_timeout_s=5.0,
                    limits=Limits(max_width=128))


def streams_request(**kw) -> ev.SimRequested:
    base = dict(run_id="streams-1", scene=KNOWN, episodes=1, duration_s=0.3, policy="zero",
                render=ev.RenderSpec(width=W, height=H, fps=10, cameras=["down"],
                                     streams=["rgb", "depth", "segmentation"]))
    return ev.SimRequested(**{**base, **kw})


async def test_a_run_with_depth_and_segmentation_stores_each_streams_files(bus, given, settings, staging, tmp_path):
    out = await given.handle(Simulator(bus, settings, staging).on_sim_requested, streams_request())
    started, done = out[0], out[-1]
    assert isinstance(started, ev.SimStarted) and started.streams == ["rgb", "depth", "segmentation"]
    p = started.perception
    assert p is not None and p.depth_scale_m == streams.DEPTH_SCALE_M
    assert p.depth_preview_m == (1.6, 2.0)  # the box top and the floor of the first frame
    assert p.objects["geom"] == ["floor", "crate"]
    report = done.report["streams"]
    assert report["raw_bytes_per_frame"] == {"rgb": W * H * 3, "depth": W * H * 2, "segmentation": W * H * 4}
    assert done.report["timings"]["frames_published_bytes"] < done.frames * W * H * 9  # compressed on the way
    assert report["depth"]["scale_m"] == 0.001 and report["depth"]["preview"]["range_m"] == {"near": 1.6, "far": 2.0}
    assert {(e["name"], e["type"]) for e in report["segmentation"]["legend"]} == {("floor", "geom"), ("crate", "geom")}
    batches = [ev.decode_frames(m.data) for m in bus.frames]
    assert [(s.stream, s.pix_fmt) for s in batches[0].streams] == [
        ("rgb", "rgb24"), ("depth", "gray16le"), ("segmentation", "bgra")]

    videos = await given.handle(Encoder(bus, settings, staging).on_sim_started, started)
    videos = [v for v in videos if isinstance(v, ev.VideoAvailable)]
    assert sorted((v.stream, v.format) for v in videos) == [
        ("depth", "mkv"), ("depth", "mp4"), ("rgb", "mp4"), ("segmentation", "mkv"), ("segmentation", "mp4")]
    assert done.expected_artifacts == len(videos) + 3  # + scene, report, telemetry
    assert {v.frames for v in videos} == {3}
    by = {(v.stream, v.format): v for v in videos}
    async with staging.local(by[("depth", "mkv")].staged) as path:
        depth = read_frames(path)
    async with staging.local(by[("segmentation", "mkv")].staged) as path:
        seg = [streams.unpack_segmentation(f) for f in read_frames(path)]
    _, _, _, want_depth, want_seg = render_known(tmp_path)
    assert all(np.abs(streams.depth_metres(d) - want_depth).max() <= 0.0005 + 1e-6 for d in depth)
    assert all(np.array_equal(s, want_seg) for s in seg)


def rgb_only_engine(model, **kw):
    """A plug-in engine that renders colour only (its factory lists no `streams`); never started here."""
    raise AssertionError("a request this engine cannot render must be refused before the engine starts")


async def test_a_stream_the_engine_cannot_render_fails_before_rendering_naming_both(bus, given, settings, staging,
                                                                                    monkeypatch):
    monkeypatch.setitem(sim_engines.BUILTIN, "flatcam", f"{__name__}:rgb_only_engine")
    req = streams_request(render=ev.RenderSpec(width=W, height=H, engine="flatcam", streams=["rgb", "depth"]))
    (failed,) = await given.handle(Simulator(bus, settings, staging).on_sim_requested, req)
    assert isinstance(failed, ev.SimFailed) and failed.code == "bad_request" and failed.field == "render.streams"
    assert "'flatcam'" in failed.message and "'depth'" in failed.message
    assert bus.frames == []
    with pytest.raises(sim_engines.EngineUnavailable, match="cannot render the 'segmentation' stream"):
        sim_engines.create("flatcam", mujoco.MjModel.from_xml_string(KNOWN), width=W, height=H,
                           streams=("rgb", "segmentation"))


async def test_gymnasium_scenes_refuse_streams_their_render_cannot_give(bus, given, settings, staging):
    req = streams_request(scene="gymnasium:CartPole-v1",
                          render=ev.RenderSpec(width=W, height=H, streams=["rgb", "segmentation"]))
    (failed,) = await given.handle(Simulator(bus, settings, staging).on_sim_requested, req)
    assert isinstance(failed, ev.SimFailed) and failed.field == "render.streams"
    assert "'segmentation'" in failed.message and "rgb frames only" in failed.message


@pytest.mark.parametrize("render, says", [
    (ev.RenderSpec(width=W, height=H, streams=["depth"]), "'rgb' must be one of the streams"),
    (ev.RenderSpec(width=W, height=H, streams=["rgb", "depth", "depth"]), "named twice"),
])
async def test_streams_without_rgb_or_twice_are_refused(bus, given, settings, staging, render, says):
    (failed,) = await given.handle(Simulator(bus, settings, staging).on_sim_requested, streams_request(render=render))
    assert isinstance(failed, ev.SimFailed) and failed.field == "render.streams" and says in failed.message


def test_the_preview_range_is_the_first_frames_nearest_and_farthest_object():
    q = streams.quantise_depth(np.array([[1.234, 2.5], [300.0, 1.9]]))
    assert perception.preview_range(q, (0.05, 250.0)) == (1.23, 2.5)
    assert perception.preview_range(streams.quantise_depth(np.full((2, 2), 300.0)), (0.05, 250.0)) == (0.05, 250.0)


async def test_mjwarp_runs_give_the_same_streams(bus, given, settings, staging, mjwarp_warm):
    """Two episodes as parallel MuJoCo Warp worlds: every stream's files, and the depth and ids of a
    frame the same as the GL runner's for the same seed (ray tracing against rasterising: all but a
    few edge pixels)."""
    from tests.conftest import MJWARP_SCENE, MJWARP_SIZE

    w, h = MJWARP_SIZE
    render = dict(width=w, height=h, fps=10, quality="fast", streams=["rgb", "depth", "segmentation"])
    out = {}
    for engine in ("mjwarp", "gl"):
        options = {"device": "cpu"} if engine == "mjwarp" else {}
        req = ev.SimRequested(run_id=f"warp-{engine}", scene=MJWARP_SCENE, episodes=2, seed=4, duration_s=0.2,
                              policy="zero", render=ev.RenderSpec(engine=engine, engine_options=options, **render))
        bus.frames.clear()
        events = await given.handle(Simulator(bus, settings, staging).on_sim_requested, req)
        started = events[0]
        assert isinstance(started, ev.SimStarted) and started.engine == engine and started.perception is not None
        videos = [v for v in await given.handle(Encoder(bus, settings, staging).on_sim_started, started)
                  if isinstance(v, ev.VideoAvailable)]
        assert sorted((v.episode, v.stream, v.format) for v in videos) == sorted(
            (ep, x, f) for ep in (0, 1) for x, f in (("rgb", "mp4"), ("depth", "mkv"), ("depth", "mp4"),
                                                      ("segmentation", "mkv"), ("segmentation", "mp4")))
        files = {}
        for v in videos:
            if v.format == "mkv":
                async with staging.local(v.staged) as path:
                    files[(v.episode, v.stream)] = read_frames(path)
        out[engine] = files
    for key in out["gl"]:
        assert len(out["mjwarp"][key]) == len(out["gl"][key]) == 2
    ids_ray = streams.unpack_segmentation(out["mjwarp"][(1, "segmentation")][0])
    ids_gl = streams.unpack_segmentation(out["gl"][(1, "segmentation")][0])
    assert (ids_ray == ids_gl).all(axis=-1).mean() > 0.95
    both = (ids_ray == ids_gl).all(axis=-1) & (ids_gl[..., 0] >= 0)
    d_ray, d_gl = out["mjwarp"][(1, "depth")][0], out["gl"][(1, "depth")][0]
    assert both.sum() > 100 and np.median(np.abs(d_ray[both].astype(int) - d_gl[both].astype(int))) <= 2


def test_gymnasiums_raw_depth_buffer_becomes_the_renderers_metres():
    """Gymnasium's `depth_array` is MuJoCo's raw depth buffer; simreel.gym converts it to metres, which
    are mujoco.Renderer's own for the same scene and camera (but at the box's outline, where
    Gymnasium's multisampled buffer and the renderer's single-sample one take different samples)."""
    from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

    model = mujoco.MjModel.from_xml_string(KNOWN)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    gym_renderer = MujocoRenderer(model, data, width=W, height=H, camera_name="down")
    try:
        raw = gym_renderer.render("depth_array")
    finally:
        gym_renderer.close()
    with mujoco.Renderer(model, height=H, width=W) as r:
        r.update_scene(data, camera="down")
        r.enable_depth_rendering()
        want = r.render().copy()
        r.enable_segmentation_rendering()
        ids = r.render()[..., 0]
    assert raw.max() <= 1.0  # not metres
    got = perception.zbuffer_metres(raw, model)
    padded = np.pad(ids, 1, mode="edge")
    outline = np.zeros_like(ids, dtype=bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            outline |= padded[dy:dy + H, dx:dx + W] != ids
    assert outline.mean() < 0.2
    assert np.abs(got - want)[~outline].max() < 1e-4
    assert np.array_equal(streams.quantise_depth(got)[~outline], streams.quantise_depth(want)[~outline])


def test_the_gym_drop_in_refuses_streams_an_env_cannot_give_at_construction(tmp_path):
    import gymnasium as gym

    from simreel.gym import RecordVideo

    with pytest.raises(ValueError, match="'depth' needs a Gymnasium MuJoCo env.*CartPoleEnv renders RGB"):
        RecordVideo(gym.make("CartPole-v1", render_mode="rgb_array"), str(tmp_path), streams=("rgb", "depth"))
    with pytest.raises(ValueError, match="'segmentation' cannot be recorded from a Gymnasium env"):
        RecordVideo(gym.make("CartPole-v1", render_mode="rgb_array"), str(tmp_path),
                    streams=("rgb", "segmentation"))
    with pytest.raises(ValueError, match="'rgb' must be one of the streams"):
        RecordVideo(gym.make("CartPole-v1", render_mode="rgb_array"), str(tmp_path), streams=("depth",))


def test_the_uis_live_preview_shows_the_rgb_plane_of_a_frame_with_streams():
    from simreel.transport import framecodec
    from simreel.services.ui import preview

    wanted = streams.frame_streams(["rgb", "depth", "segmentation"])
    rgb = [np.full((H, W, 3), 40 * k, np.uint8) for k in (1, 2)]
    frames = [r.tobytes() + bytes(W * H * 2) + bytes(W * H * 4) for r in rgb]
    c = framecodec.FrameCompressor()
    data = b"".join(c.compress(f) for f in frames)
    got = preview.preview_png(data, "zstd", 2, W, H, wanted)
    assert got == preview.png(preview.shrink(rgb[1].tobytes(), W, H))  # the last frame's colour
