"""`simreel bench`: real subprocess workers, real rendering; unavailable backends are reported, not raised."""
import argparse
import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

from simreel.bench import cli  # noqa: E402
from simreel.sim import scenes  # noqa: E402

SMALL = ["--frames", "3", "--warmup", "1"]


def test_render_egl_reports_fps_renderer_and_json(tmp_path):
    out = tmp_path / "render.json"
    frames = tmp_path / "frames"
    rc = cli.main(["render", "--backend", "egl", "--width", "160", "--height", "120", "--quality", "fast",
                   "--save-frames", str(frames), "--json", str(out), *SMALL])
    assert rc == 0
    report = json.loads(out.read_text())
    (backend,) = report["backends"]
    assert backend["status"] == "ok" and backend["backend"] == "egl"
    (r,) = backend["results"]
    assert r["fps"] > 0 and r["frames"] == 3 and (r["width"], r["height"]) == (160, 120)
    assert r["gl"]["renderer"] and isinstance(r["gl"]["software"], bool)
    for key in ("render_ms", "readback_ms", "update_ms", "frame_ms"):
        assert set(r[key]) == {"mean", "p50", "p95", "max"}
    assert r["physics_steps_per_s"] > 0
    pngs = sorted(frames.glob("*.png"))
    assert len(pngs) == 3 and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_lists_every_requested_backend(tmp_path, capsys):
    out = tmp_path / "compare.json"
    rc = cli.main(["compare", "--backend", "egl", "--backend", "osmesa", "--scene", "pendulum",
                   "--quality", "fast", "--res", "64x48", "--json", str(out), *SMALL])
    assert rc == 0
    report = json.loads(out.read_text())
    by_name = {b["backend"]: b for b in report["backends"]}
    assert set(by_name) == {"egl", "osmesa"}
    assert by_name["egl"]["status"] == "ok"
    osmesa = by_name["osmesa"]
    if osmesa["status"] == "ok":
        assert osmesa["results"][0]["fps"] > 0
    else:
        assert osmesa["status"] == "unavailable" and osmesa["reason"]
    text = capsys.readouterr().out
    assert "egl" in text and "osmesa" in text and "Traceback" not in text


def test_a_backend_that_cannot_start_is_unavailable_not_a_traceback():
    result = cli.run_backend("bogus", ["--frames", "1", "--warmup", "0", "--res", "32x24"], timeout=120)
    assert result["status"] == "unavailable"
    assert "MUJOCO_GL" in result["reason"] and "Traceback" not in result["reason"]


def test_scenes_lists_the_registry(capsys):
    assert cli.main(["scenes", "--json", "-"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(scenes.BUILTIN)
    assert all(r["offscreen"] == "1280x960" and r["geoms"] > 0 for r in rows)
    assert cli.main(["scenes"]) == 0
    assert "apartment" in capsys.readouterr().out


def test_register_wires_subcommands_and_bare_bench_runs_render(monkeypatch):
    parser = argparse.ArgumentParser(prog="simreel")
    cli.register(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["bench", "render"]).func is cli.cmd_render
    assert parser.parse_args(["bench", "compare"]).func is cli.cmd_compare
    assert parser.parse_args(["bench", "scenes"]).func is cli.cmd_scenes
    seen = {}
    monkeypatch.setattr(cli, "cmd_render", lambda a: seen.setdefault("args", a) and 0)
    args = parser.parse_args(["bench"])
    args.func(args)
    a = seen["args"]
    assert (a.scene, a.width, a.height, a.quality) == ("cartpole", 640, 480, "full")


def test_resolution_parsing():
    from simreel.bench.worker import parse_res

    assert parse_res("640x480") == (640, 480)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_res("big")


def test_engine_rows_share_the_table_and_json_with_worlds_and_warmup_apart(tmp_path, capsys, mjwarp_warm):
    out = tmp_path / "compare.json"
    rc = cli.main(["compare", "--backend", "egl", "--engine", "mjwarp", "--engine", "no_such_engine_mod:create",
                   "--worlds", "1", "--worlds", "2", "--scene", "cartpole", "--quality", "fast", "--res", "48x32",
                   "--option", "device=cpu", "--json", str(out), *SMALL])
    assert rc == 0
    by_name = {b["backend"]: b for b in json.loads(out.read_text())["backends"]}
    assert by_name["egl"]["status"] == "ok"
    warp = by_name["mjwarp"]
    assert warp["status"] == "ok" and warp["device"] == "cpu"
    assert [(r["worlds"], r["frames"]) for r in warp["results"]] == [(1, 3), (2, 3)]
    for r in warp["results"]:
        assert r["fps"] > 0 and r["fps_per_world"] * r["worlds"] == pytest.approx(r["fps"], rel=0.01)
        assert r["warmup_s"] > 0 and r["engine"]["engine"] == "mjwarp" and r["last_frame_mean"] > 10
    broken = by_name["no_such_engine_mod:create"]
    assert broken["status"] == "unavailable" and "No module named" in broken["reason"]
    text = capsys.readouterr().out
    assert "fps/world" in text and "warm-up" in text and "unavailable" in text and "Traceback" not in text


def test_render_engine_unavailable_exits_2_with_the_reason(capsys):
    assert cli.main(["render", "--engine", "nonesuch", "--width", "32", "--height", "24", *SMALL]) == 2
    assert "no such engine" in capsys.readouterr().out


def test_compare_takes_width_and_height_like_render():
    import argparse

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["bench", "compare", "--width", "320", "--height", "240"])
    assert cli.resolutions(args) == [(320, 240)]
    args = parser.parse_args(["bench", "compare", "--res", "160x120", "--width", "320", "--height", "240"])
    assert cli.resolutions(args) == [(160, 120), (320, 240)]
    assert cli.resolutions(parser.parse_args(["bench", "compare"])) == [(640, 480)]
