"""Depth and segmentation through the real stack (nats-server, simulator, encoder, uploader, local
store as separate processes): every stream's files for every camera, read back with PyAV, linked to the
same frame times, byte-identical for the same request; on S3 through object-store staging; and depth
from the Gymnasium drop-in."""
from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import av
import gymnasium as gym
import mujoco
import numpy as np
import pytest

from simreel.contract import events as ev
from simreel.contract import streams
from simreel.stack.embedded import Stack
from simreel.gym import RecordVideo
from simreel.media.lossless import read_frames
from simreel.sim import perception
from simreel.sim.policies import make_policy
from simreel.sim.rollout import FrameSchedule, seed_world

from tests.support.runs import run_request, small_request
from tests.support.s3server import S3Server

pytestmark = pytest.mark.integration

W, H, FPS = 64, 48, 10
SCENE = f"""<mujoco><visual><global offwidth="{W}" offheight="{H}"/></visual>
<worldbody><light pos="0 0 3"/>
<camera name="down" pos="0 0 2" fovy="45"/>
<camera name="side" pos="0 -2 1" xyaxes="1 0 0 0 0.5 1"/>
<geom name="floor" type="plane" size="5 5 .1" rgba=".5 .5 .5 1"/>
<body name="pole" pos="0 0 .3"><joint name="swing" type="hinge" axis="1 0 0" damping=".1"/>
<geom name="pole" type="capsule" fromto="0 0 0 0 .3 .5" size=".05" rgba=".2 .4 .8 1"/></body>
<body name="crate" pos=".5 0 .2"><geom name="crate" type="box" size=".2 .2 .2" rgba=".8 .3 .2 1"/></body>
</worldbody><actuator><motor joint="swing" gear="1"/></actuator></mujoco>"""


def request(run_id: str) -> ev.SimRequested:
    return small_request(run_id=run_id, scene=SCENE, episodes=2, duration_s=0.6, policy="sine", seed=3,
                         render=ev.RenderSpec(width=W, height=H, fps=FPS, cameras=["down", "side"], quality="full",
                                              streams=["rgb", "depth", "segmentation"]),
                         outputs=ev.OutputSpec(layout="both"))


def renderer_truth(telemetry: list[dict], episode: int, camera: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """mujoco.Renderer's own depth and ids of each frame of an episode, rendering the episode's physics
    replayed here (its seed's start state, the sine policy, frame k at the first step at or after k/fps);
    the replay is checked against the qpos telemetry.jsonl recorded for the same frames. (A frame
    cannot be rendered from its recorded qpos alone: mj_step leaves the poses of the step's start.)"""
    model = mujoco.MjModel.from_xml_string(SCENE)
    data = mujoco.MjData(model)
    seed = 3 + episode
    seed_world(model, data, seed, 0.01)
    policy = make_policy("sine", model, seed=seed)
    schedule = FrameSchedule.of(model.opt.timestep, FPS)
    rows = [x for x in telemetry if x["episode"] == episode]
    depth, seg = [], []
    step = 0
    with mujoco.Renderer(model, height=H, width=W) as r:
        for k, row in enumerate(rows):
            while step < schedule.step_for(k):
                data.ctrl[:] = np.asarray(policy(model, data, data.time), dtype=float).reshape(model.nu)
                mujoco.mj_step(model, data)
                step += 1
            assert data.qpos.tolist() == row["qpos"]
            r.update_scene(data, camera=camera)
            r.enable_depth_rendering()
            depth.append(r.render().copy())
            r.enable_segmentation_rendering()
            seg.append(r.render().copy())
            r.disable_segmentation_rendering()
    return depth, seg


async def test_every_stream_of_every_camera_is_stored_and_reads_back(stack):
    result, seen = await run_request(stack.url, request("streams-a"))
    assert result.status == "completed", result.error
    by_kind: dict[str, list] = {}
    for a in result.artifacts:
        by_kind.setdefault(a.kind, []).append(a)
    # (2 episodes + the concatenation) × 2 cameras of each file kind
    for kind in ("video", "depth", "depth_preview", "segmentation", "segmentation_preview"):
        assert sorted((a.episode is None, a.camera) for a in by_kind[kind]) == sorted(
            (ep is None, cam) for ep in (0, 1, None) for cam in ("down", "side")), kind
    assert {a.format for a in by_kind["depth"]} == {"mkv"} and {a.format for a in by_kind["depth_preview"]} == {"mp4"}

    report = json.loads(Path(by_kind["report"][0].path).read_text())["streams"]
    assert report["depth"]["scale_m"] == streams.DEPTH_SCALE_M
    near, far = report["depth"]["preview"]["range_m"]["near"], report["depth"]["preview"]["range_m"]["far"]
    assert 0 < near < far
    assert {e["name"] for e in report["segmentation"]["legend"]} == {"floor", "pole", "crate"}
    started = next(e for e in seen if isinstance(e, ev.SimStarted))
    assert started.perception is not None and started.perception.depth_preview_m == (near, far)

    telemetry = [json.loads(x) for x in Path(by_kind["telemetry"][0].path).read_text().splitlines()]
    for episode in (0, 1):
        depth_file = next(a for a in by_kind["depth"] if a.episode == episode and a.camera == "down")
        seg_file = next(a for a in by_kind["segmentation"] if a.episode == episode and a.camera == "down")
        depth, seg = read_frames(depth_file.path), read_frames(seg_file.path)
        want_depth, want_seg = renderer_truth(telemetry, episode, "down")
        assert len(depth) == len(seg) == len(want_depth) == 6  # one per telemetry row: the same frames
        for got, want in zip(depth, want_depth):
            assert np.abs(streams.depth_metres(got) - want).max() <= streams.DEPTH_SCALE_M / 2 + 1e-6
        for got, want in zip(seg, want_seg):
            assert np.array_equal(streams.unpack_segmentation(got), want)
    for a in by_kind["depth_preview"] + by_kind["segmentation_preview"]:
        with av.open(a.path) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert len(frames) == (12 if a.episode is None else 6) and frames[0].shape == (H, W, 3)
        assert frames[0].std() > 5  # a picture, not a flat colour

    again, _ = await run_request(stack.url, request("streams-b"))
    assert again.status == "completed", again.error

    def digests(r):
        return {(a.kind, a.episode, a.camera): a.sha256 for a in r.artifacts if a.kind not in ("report",)}
    assert digests(again) == digests(result)


class DepthProbe(gym.Wrapper):
    """Reads the env's own depth buffer after every reset and step, as a reference (the frame the
    recorder above it captures is of the same state)."""

    def __init__(self, env):
        super().__init__(env)
        self.depths: list[np.ndarray] = []

    def _probe(self):
        raw = self.env.unwrapped.mujoco_renderer.render("depth_array")
        self.depths.append(streams.quantise_depth(perception.zbuffer_metres(raw, self.env.unwrapped.model)))

    def reset(self, **kw):
        out = self.env.reset(**kw)
        self._probe()
        return out

    def step(self, action):
        out = self.env.step(action)
        self._probe()
        return out


def test_the_gym_drop_in_records_depth_of_a_mujoco_env(stack, tmp_path):
    probe = DepthProbe(gym.make("HalfCheetah-v5", render_mode="rgb_array", width=W, height=H, max_episode_steps=15))
    env = RecordVideo(probe, str(tmp_path / "videos"), episode_trigger=lambda e: True, name_prefix="cheetah",
                      nats_url=stack.url, streams=("rgb", "depth"))
    env.action_space.seed(0)
    env.reset(seed=1)
    for _ in range(15):
        env.step(env.action_space.sample())
    env.close()

    (video,) = env.videos
    assert video.status == "completed" and video.frames == 16
    folder = tmp_path / "videos"
    assert sorted(p.name for p in folder.glob("cheetah-episode-0*")) == [
        "cheetah-episode-0-depth.mkv", "cheetah-episode-0-depth.mp4", "cheetah-episode-0.mp4"]
    stored = read_frames(folder / "cheetah-episode-0-depth.mkv")
    assert len(stored) == 16 and all(np.array_equal(a, b) for a, b in zip(stored, probe.depths))
    assert all((d < streams.DEPTH_MAX).mean() > 0.3 for d in stored)  # the floor and the cheetah, not sky only
    with av.open(str(folder / "cheetah-episode-0-depth.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 16
    report = json.loads(Path(urlparse(video.report_url).path).read_text())
    assert report["streams"]["depth"]["scale_m"] == streams.DEPTH_SCALE_M


@pytest.fixture(scope="module")
def s3_stack(tmp_path_factory):
    """The stack on a real S3 server, encoded files travelling to the uploader through JetStream's
    object store (no shared directory)."""
    base = tmp_path_factory.mktemp("streams-s3")
    with S3Server() as s3:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIMREEL_")}
        env.update({**s3.env("artifacts"), "SIMREEL_STAGING": "objectstore"})
        stack = Stack(data_dir=base / "data", out_dir=base / "unused", env=env)
        plain = stack.service_env

        def without_dir_staging():
            e = plain()
            e["SIMREEL_STAGING"] = "objectstore"
            e.pop("SIMREEL_STAGING_DIR", None)
            return e

        stack.service_env = without_dir_staging
        stack.start()
        try:
            yield stack
        finally:
            stack.stop()


async def test_stream_files_are_stored_on_s3_as_their_kinds(s3_stack, tmp_path):
    req = small_request(run_id="streams-s3", scene=SCENE, duration_s=0.4, policy="zero",
                        render=ev.RenderSpec(width=W, height=H, fps=FPS, cameras=["down"],
                                             streams=["rgb", "depth", "segmentation"]))
    result, _ = await run_request(s3_stack.url, req)
    assert result.status == "completed", result.error
    got = {a.kind: a for a in result.artifacts}
    assert {"video", "depth", "depth_preview", "segmentation", "segmentation_preview"} <= set(got)
    assert got["depth"].content_type == "video/x-matroska" and got["depth"].key.endswith("/0000/episode-0000-depth.mkv")
    assert got["segmentation_preview"].key.endswith("/0000/episode-0000-segmentation.mp4")
    body = urllib.request.urlopen(got["depth"].url, timeout=10).read()  # the presigned URL
    assert hashlib.sha256(body).hexdigest() == got["depth"].sha256
    (tmp_path / "d.mkv").write_bytes(body)
    depth = read_frames(tmp_path / "d.mkv")
    assert len(depth) == 4 and (depth[0] < streams.DEPTH_MAX).all()  # the floor fills the view
