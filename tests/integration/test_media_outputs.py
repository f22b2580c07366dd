"""Media through the real stack: every format, layouts, cameras, exact timing, deterministic bytes,
the blank/frozen guard, and frames bigger than a NATS message. Files are decoded with PyAV."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import av
import pytest

from simreel.contract import events as ev

from tests.support.runs import run_request, small_request

pytestmark = pytest.mark.integration

STILL_SCENE = """<mujoco><worldbody><light pos="0 0 3"/>
<camera name="still" pos="0 -2 1" xyaxes="1 0 0 0 0.5 1"/>
<geom type="box" size=".2 .2 .2" rgba=".8 .3 .2 1"/></worldbody></mujoco>"""


def decode(path: str) -> tuple[int, float, int, int]:
    with av.open(path) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        duration = float(c.duration / av.time_base)
        return n, duration, s.codec_context.width, s.codec_context.height


def arts(result, kind, episode="any"):
    return [a for a in result.artifacts if a.kind == kind and (episode == "any" or a.episode == episode)]


async def test_all_formats_in_both_layouts(stack):
    req = small_request(episodes=2, duration_s=2.0, render=ev.RenderSpec(width=160, height=120, fps=20, quality="fast"),
                        outputs=ev.OutputSpec(formats=["mp4", "gif", "png"], layout="both", gif_fps=10))
    result, seen = await run_request(stack.url, req)
    assert result.status == "completed", result.error
    assert len(result.artifacts) == 3 * 3 + 3  # (2 episodes + concat) × 3 formats + scene, report, telemetry

    for ep in (0, 1):
        frames, duration, w, h = decode(arts(result, "video", ep)[0].path)
        assert (frames, w, h) == (40, 160, 120) and abs(duration - 2.0) <= 1 / 20
        gif_frames, gif_duration, _, _ = decode(arts(result, "gif", ep)[0].path)
        assert abs(gif_frames - 2.0 * 10) <= 1
        with zipfile.ZipFile(arts(result, "frames", ep)[0].path) as z:
            assert len([n for n in z.namelist() if n.endswith(".png")]) == 40

    concat = arts(result, "video", None)[0]
    frames, duration, _, _ = decode(concat.path)
    assert frames == 80 and abs(duration - 4.0) <= 1 / 20
    report = json.loads(Path(arts(result, "report")[0].path).read_text())
    assert [(e["concat_first_frame"], e["concat_start_s"]) for e in report["episodes"]] == [(0, 0.0), (40, 2.0)]
    video = next(e for e in seen if isinstance(e, ev.VideoAvailable) and e.episode is None and e.format == "mp4")
    assert [(s.episode, s.first_frame, s.frames) for s in video.spans] == [(0, 0, 40), (1, 40, 40)]


async def test_same_request_gives_identical_bytes_and_another_seed_does_not(stack):
    def req(seed, run_id):
        return small_request(run_id=run_id, seed=seed, duration_s=1.0,
                             outputs=ev.OutputSpec(formats=["mp4", "gif"], telemetry=False))

    a, _ = await run_request(stack.url, req(11, "det-a"))
    b, _ = await run_request(stack.url, req(11, "det-b"))
    c, _ = await run_request(stack.url, req(12, "det-c"))
    for kind in ("video", "gif"):
        assert arts(a, kind)[0].sha256 == arts(b, kind)[0].sha256
        assert arts(a, kind)[0].sha256 != arts(c, kind)[0].sha256


async def test_frozen_scene_warns_and_fail_on_blank_fails(stack):
    warn, seen = await run_request(stack.url, small_request(scene=STILL_SCENE, policy="zero", duration_s=0.5))
    assert warn.status == "completed"
    ended = next(e for e in seen if isinstance(e, ev.EpisodeEnded))
    assert ended.frozen and any("frames are identical (frozen video)" in w for w in ended.warnings)
    video = next(e for e in seen if isinstance(e, ev.VideoAvailable))
    assert video.warnings

    fail, seen = await run_request(stack.url, small_request(scene=STILL_SCENE, policy="zero", duration_s=0.5,
                                                            fail_on_blank=True))
    assert fail.status == "failed"
    failed = next(e for e in seen if isinstance(e, ev.SimFailed))
    assert failed.code == "blank_frames" and "frozen video" in failed.message


async def test_frames_larger_than_a_nats_message_arrive_intact(stack):
    req = small_request(duration_s=0.5, render=ev.RenderSpec(width=1280, height=720, fps=10, quality="fast"),
                        outputs=ev.OutputSpec(formats=["png"]))
    result, _ = await run_request(stack.url, req)
    assert result.status == "completed", result.error
    with zipfile.ZipFile(arts(result, "frames")[0].path) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))
        assert len(names) == 5
        with z.open(names[-1]) as f, av.open(f) as c:
            frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape == (720, 1280, 3)
    assert frame.std() > 5  # a real picture, not a blank or truncated buffer


async def test_each_camera_gets_its_own_video_or_one_tiled_video(stack):
    two = small_request(scene="workbench", duration_s=0.5, render=ev.RenderSpec(
        width=96, height=64, fps=10, quality="fast", cameras=["main", "top"]), outputs=ev.OutputSpec(telemetry=False))
    result, _ = await run_request(stack.url, two)
    assert result.status == "completed", result.error
    videos = arts(result, "video")
    assert sorted(a.camera for a in videos) == ["main", "top"]
    assert {decode(a.path)[2:] for a in videos} == {(96, 64)}
    assert videos[0].sha256 != videos[1].sha256

    tiled = small_request(scene="workbench", duration_s=0.5, render=ev.RenderSpec(
        width=96, height=64, fps=10, quality="fast", cameras=["main", "top"], tile=True),
        outputs=ev.OutputSpec(telemetry=False))
    result, _ = await run_request(stack.url, tiled)
    assert result.status == "completed", result.error
    (video,) = arts(result, "video")
    assert decode(video.path)[:1] == (5,) and decode(video.path)[2:] == (192, 64)


async def test_av1_where_the_build_has_it_and_a_clear_error_otherwise(stack):
    from simreel.media.mp4 import available_codecs

    req = small_request(duration_s=0.5, outputs=ev.OutputSpec(codec="libsvtav1", crf=40, telemetry=False))
    result, seen = await run_request(stack.url, req)
    if "libsvtav1" in available_codecs():
        assert result.status == "completed", result.error
        video = arts(result, "video")[0]
        with av.open(video.path) as c:
            assert c.streams.video[0].codec_context.name in ("av1", "libdav1d", "libaom-av1")
            decoded = sum(1 for _ in c.decode(video=0))
        announced = next(e for e in seen if isinstance(e, ev.VideoAvailable))
        assert announced.codec == "libsvtav1" and decoded == announced.frames == 8
    else:
        failed = next(e for e in seen if isinstance(e, ev.EncodeFailed))
        assert "libsvtav1" in failed.message

    bad = small_request(duration_s=0.4, outputs=ev.OutputSpec(crf=60))
    result, seen = await run_request(stack.url, bad)
    failed = next(e for e in seen if isinstance(e, ev.EncodeFailed))
    assert "crf 60" in failed.message and result.status == "failed"
