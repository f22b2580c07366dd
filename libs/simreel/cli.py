"""`simreel` — thin entry points: parse flags, build a SimRequested, hand it to the bus.

Logs go to stderr (structlog); tables and progress to stderr too, so `--json` leaves stdout with
exactly one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from simreel.runtime import config
from simreel.contract import events as ev
from simreel.runtime import log as logs
from simreel.runtime.config import NatsSettings

from simreel.stack.embedded import SERVICES as STACK_SERVICES  # noqa: E402 - the one list of worker services

SERVICES = (*STACK_SERVICES, "ui")  # what `simreel serve` can run
VIDEO_CHOICES = {"mp4": ["mp4"], "gif": ["gif"], "both": ["mp4", "gif"], "png": ["png"], "all": ["mp4", "gif", "png"]}


# --- request building ------------------------------------------------------------------------------


def _add_request_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("scene", nargs="?", default=None,
                   help="builtin scene name, path to an MJCF .xml file, or file:<path under a scene root>")
    p.add_argument("--again", metavar="RUN_ID", default=None,
                   help="run a stored run's request again (its scene files come from the stack's store: the "
                        "same seeds give byte-identical videos); needs the stack that ran it (--nats)")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="seed of episode 0; episode i uses seed+i")
    p.add_argument("--duration", type=float, default=None, help="simulated seconds per episode (default 5)")
    p.add_argument("--max-steps", type=int, default=None, help="physics steps per episode (instead of --duration)")
    p.add_argument("--fps", "--video-fps", dest="fps", type=int, default=30)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--policy", default="zero", help="zero | random | sine | entrypoint:module:function (allow-listed)")
    p.add_argument("--session", default="default", help="retention group")
    p.add_argument("--camera", action="append", default=[],
                   help="named camera (repeatable: one video per camera, or one tiled video with --tile)")
    p.add_argument("--tile", action="store_true", help="put the cameras side by side in one video")
    p.add_argument("--free-camera", default=None, metavar="distance=3,azimuth=90,elevation=-20,lookat=0:0:0.5",
                   help="record from a free camera at this pose")
    p.add_argument("--quality", choices=["full", "fast"], default="full",
                   help="fast turns off shadows and reflections (several times faster on software GL)")
    p.add_argument("--engine", default="gl",
                   help="render engine: gl (default), or mjwarp to run the episodes as parallel worlds (docs/gpu.md)")
    p.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE",
                   help="render engine option, e.g. device=cpu (repeatable)")
    p.add_argument("--stream", action="append", default=[], choices=["depth", "segmentation"],
                   help="record this stream beside RGB for every camera (repeatable): lossless file + colour preview")
    p.add_argument("--keep", default=None, metavar="RULE",
                   help="keep only the episodes this rule selects, decided after each ends: a rule name "
                        "(failures, new_best) or its JSON, e.g. '{\"rule\": \"worst\", \"k\": 5}' (docs/events.md)")
    p.add_argument("--video", choices=sorted(VIDEO_CHOICES), default="mp4")
    p.add_argument("--layout", choices=["per-episode", "concat", "both"], default="per-episode")
    p.add_argument("--gif-fps", type=int, default=15)
    p.add_argument("--gif-width", type=int, default=None)
    p.add_argument("--crf", type=int, default=23)
    p.add_argument("--codec", choices=["libx264", "libsvtav1"], default="libx264", help="MP4 video codec (AV1: libsvtav1)")
    p.add_argument("--preset", default="veryfast")
    p.add_argument("--no-telemetry", action="store_true", help="do not store telemetry.jsonl")
    p.add_argument("--fail-on-blank", action="store_true", help="fail the run when nothing was drawn (every frame a uniform fill) or the frames never change")
    p.add_argument("--asset", action="append", default=[], metavar="NAME=PATH",
                   help="a file the inline MJCF references (repeatable)")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--run-id", default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object (run_id, status, artifacts) on stdout")
    p.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise SystemExit(f"simreel: {what} must be KEY=VALUE, got {item!r}")
        out[k] = v
    return out


def _json_or_text(value: str):
    """`true`, `3`, `0.5` as JSON; anything else as the text itself (`cpu`)."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def _free_camera(spec: str | None) -> dict | None:
    if not spec:
        return None
    out: dict[str, Any] = {}
    for k, v in _pairs(spec.split(","), "--free-camera").items():
        try:
            out[k] = [float(x) for x in v.split(":")] if k == "lookat" else float(v)
        except ValueError:
            raise SystemExit(f"simreel: --free-camera {k}={v!r} is not a number") from None
    return out


_POLICY_FILE = re.compile(r"^(?P<path>.+\.py):(?P<func>[A-Za-z_]\w*)$")
POLICY_DIR = ".policy"  # where a policy file sits in a request's tree


def pack_scene(a: argparse.Namespace):
    """The local MJCF file named on the command line, and a `--policy ./file.py:function`, as a scene
    package (None when neither is local): every file the scene references, `..` included, under their
    common folder, digested for upload; the policy file under `.policy/`."""
    scene = a.scene
    if scene is None:
        if a.again is None:
            raise SystemExit("simreel: name a scene (or --again RUN_ID)")
        return None
    from simreel.runtime.config import Limits
    from simreel.sim.errors import SceneError
    from simreel.sim.package import ScenePackage, pack, sha256_file

    package = None
    if scene.endswith(".xml") and Path(scene).is_file():
        limits = Limits.from_env()
        try:
            package = pack(scene, max_file_bytes=limits.max_scene_file_bytes, max_scene_bytes=limits.max_scene_bytes)
        except SceneError as e:
            raise SystemExit(f"simreel: {scene}: {e}") from None
        except OSError as e:
            raise SystemExit(f"simreel: {scene}: {e.strerror}: {e.filename}") from None
    m = _POLICY_FILE.match(a.policy or "")
    if m is None:
        return package
    policy = Path(m["path"])
    if not policy.is_file():
        raise SystemExit(f"simreel: --policy {a.policy}: no such file {policy}")
    path = f"{POLICY_DIR}/{policy.name}"
    digest = ev.SceneFile(sha256=sha256_file(policy), size=policy.stat().st_size)
    if package is None:
        return ScenePackage(root=policy.parent.resolve(), entry="", local={path: policy}, files={path: digest})
    return ScenePackage(root=package.root, entry=package.entry, local={**package.local, path: policy},
                        files={**package.files, path: digest})


def policy_spec(a: argparse.Namespace) -> str:
    """The request's policy: a local `./file.py:function` becomes `file:.policy/file.py:function`."""
    m = _POLICY_FILE.match(a.policy or "")
    if m is None or not Path(m["path"]).is_file():
        return a.policy
    return f"file:{POLICY_DIR}/{Path(m['path']).name}:{m['func']}"


def allowed_policy(a: argparse.Namespace, package) -> str | None:
    """The allow-list entry for the policy named on this command line: the stack `simreel run`
    starts for itself is the caller's own, so it allows the policy its caller asked for."""
    spec = policy_spec(a)
    if spec.startswith("entrypoint:"):
        return spec
    if spec.startswith("file:") and package is not None:
        return f"file:{package.files[spec[len('file:'):].rpartition(':')[0]].sha256}"
    return None


def _keep_rule(text: str | None) -> Any:
    """`--keep failures` or `--keep '{"rule": "worst", "k": 5}'` as the request's JSON rule."""
    if text is None:
        return None
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError as e:
            raise SystemExit(f"simreel: --keep {text!r} is not JSON: {e}") from None
    return {"rule": text.strip()}


def build_request(a: argparse.Namespace, package=None) -> ev.SimRequested:
    """The request the command line describes; with `package`, its scene names the package's files."""
    scene = a.scene
    assets: dict[str, bytes] = {name: Path(file).read_bytes() for name, file in _pairs(a.asset, "--asset").items()}
    files: dict[str, Any] = {}
    if package is not None:
        scene, files = package.entry or scene, package.files
    raw: dict[str, Any] = {
        "type": "SimRequested",
        "scene": scene,
        "assets": assets,
        "files": files,
        "episodes": a.episodes,
        "seed": a.seed,
        "duration_s": a.duration,
        "max_steps": a.max_steps,
        "policy": policy_spec(a),
        "session": a.session,
        "tags": _pairs(a.tag, "--tag"),
        "fail_on_blank": a.fail_on_blank,
        "render": {"width": a.width, "height": a.height, "fps": a.fps, "cameras": a.camera, "quality": a.quality,
                   "streams": ["rgb", *dict.fromkeys(a.stream)],
                   "tile": a.tile, "free_camera": _free_camera(a.free_camera), "engine": a.engine,
                   "engine_options": {k: _json_or_text(v) for k, v in _pairs(a.engine_option, "--engine-option").items()}},
        "outputs": {"formats": VIDEO_CHOICES[a.video], "layout": a.layout, "crf": a.crf, "codec": a.codec, "preset": a.preset,
                    "gif_fps": a.gif_fps, "gif_width": a.gif_width, "telemetry": not a.no_telemetry,
                    "keep": _keep_rule(a.keep)},
    }
    if a.run_id:
        raw["run_id"] = a.run_id
    try:
        return msgspec.convert(raw, ev.SimRequested)
    except msgspec.ValidationError as e:
        raise SystemExit(f"simreel: invalid request: {e}") from None


# --- progress and results --------------------------------------------------------------------------


def _console():
    from rich.console import Console

    return Console(stderr=True)


def check_package(package) -> None:
    """MuJoCo on this machine compiles the packed tree alone, as the simulator will: a mesh it refuses
    is reported before anything is uploaded (skipped when every file is stored already: then the
    same content was uploaded, and checked, before)."""
    from simreel.sim.errors import SceneError
    from simreel.sim.loader import load_tree

    try:
        load_tree(package.entry, package.local)
    except SceneError as e:
        raise SystemExit(f"simreel: {package.root / package.entry}: {e}") from None


async def _upload(client, package, progress=None) -> None:
    """Upload the scene's files the store lacks, with a progress bar in bytes when there are any."""
    from simreel.transport.scenefiles import SceneFileStore

    store = SceneFileStore(client.bus)
    lacking = await store.missing(package.files)
    if lacking and package.entry:
        await asyncio.to_thread(check_package, package)
    if progress is None or not lacking:
        await client.upload_scene(package)
        return
    total = sum(f.size for f in lacking.values())
    task = progress.add_task("upload", total=total, note=f"{len(lacking)} scene files")
    await client.upload_scene(package, on_progress=lambda done, _: progress.update(task, completed=done))


async def _submit_and_wait(settings: NatsSettings, req: ev.SimRequested, *, quiet: bool, timeout: float | None,
                           package=None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from simreel.client import Client, RequestTooLarge
    from simreel.transport.scenefiles import SceneFileError

    client = await Client.connect(settings)
    try:
        if quiet:
            if package is not None:
                await _upload(client, package)
            return await client.run(req, timeout=timeout)
        from simreel.readmodels.projections import RunState

        n_videos = RunState(req.run_id, request=req).expected_videos
        with Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[note]}"), console=_console(), transient=False) as progress:
            if package is not None:
                await _upload(client, package, progress)
            sim = progress.add_task("simulate", total=req.episodes, note="waiting for a simulator")
            enc = progress.add_task("encode", total=n_videos, note="")
            sto = progress.add_task("store", total=None, note="")

            def on_event(e: ev.Event, state) -> None:
                if isinstance(e, ev.SimStarted):
                    progress.update(sim, note=f"{e.gl_backend} · {e.gl_renderer[:40]}")
                progress.update(sim, completed=state.episodes_ended)
                progress.update(enc, total=state.expected_videos, completed=len(state.videos))
                if state.completed:
                    progress.update(sto, total=state.expected_now)
                progress.update(sto, completed=state.stored_artifacts)
                if state.error:
                    progress.update(sim, note=f"[red]{state.error_code}")

            return await client.run(req, timeout=timeout, on_event=on_event)
    except (RequestTooLarge, SceneFileError) as e:
        raise SystemExit(f"simreel: {e}") from None
    finally:
        await client.close()


def _print_result(result, *, as_json: bool, out: Path | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        sys.stdout.flush()
        return
    from rich.markup import escape

    console = _console()
    if result.error:
        console.print(f"[red]run {result.run_id} {result.status}: {escape(f'[{result.error_code}]')} "
                      f"{escape(one_line(result.error))}", soft_wrap=True)
    if result.ok or result.artifacts:
        console.print(artifact_table(result, out))


def one_line(text: object, limit: int = 300) -> str:
    """A failure as the CLI shows it: one line, bounded; the details are in the service log."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def failed_service_log(result, log_dir: Path) -> Path:
    """The log of the service whose event failed the run (the log directory when unknown)."""
    service = result.state.failed_in if result.state else None
    found = sorted(log_dir.glob(f"{service}-*.log")) if service else []
    return found[0] if found else log_dir


def artifact_table(result, out: Path | None = None):
    """One row per artifact with what the per-video log line says (frames, duration, fps, encode
    time, size), readable at 100 columns: the run's folder is named once in the caption, each row
    shows the file inside it."""
    from rich.table import Table

    videos = {v.event_id: v for v in (result.state.videos.values() if result.state else ())}
    artifacts = sorted(result.artifacts, key=lambda a: (a.kind, -1 if a.episode is None else a.episode, a.key))
    places = [_shown(a.path, out) if a.path else a.url for a in artifacts]
    folder = _common_folder(places) if all(a.path for a in artifacts) else ""
    where = (_shown(str(out), None).rstrip("/") + "/" if out else "") + folder
    t = Table(title=f"run {result.run_id} — {result.status}", caption=f"in {where}" if folder else None,
              caption_justify="left", title_justify="left")
    for col, justify in (("kind", "left"), ("ep", "right"), ("frames", "right"), ("duration", "right"),
                         ("fps", "right"), ("encode", "right"), ("size", "right")):
        t.add_column(col, justify=justify, no_wrap=True)
    t.add_column("file", overflow="fold")  # whole, never cut with an ellipsis
    for a, place in zip(artifacts, places):
        v = videos.get(a.source_event_id)
        t.add_row(a.kind, "all" if a.episode is None else str(a.episode),
                  str(v.frames) if v else "", f"{v.duration_s:.2f} s" if v else "", f"{v.fps:g}" if v else "",
                  f"{v.encode_ms / 1000:.2f} s" if v else "", _size(a.bytes), place[len(folder):])
    return t


def _shown(path: str, out: Path | None) -> str:
    """A path relative to --out (else to the working directory) when it is below it."""
    for base in ([out] if out else []) + [Path.cwd()]:
        try:
            return str(Path(path).resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return path


def _common_folder(paths: list[str]) -> str:
    """The longest shared folder of the paths, with its trailing slash ('' if none)."""
    if not paths:
        return ""
    parts = [p.split("/")[:-1] for p in paths]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "/".join(common) + "/" if common else ""


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _nats_settings(a: argparse.Namespace) -> NatsSettings:
    return NatsSettings.from_env(url=getattr(a, "nats", None), creds=getattr(a, "creds", None),
                                 user=getattr(a, "user", None), password=getattr(a, "password", None),
                                 tls_ca=getattr(a, "tls_ca", None))


def _bus_configured(a: argparse.Namespace) -> bool:
    return bool(getattr(a, "nats", None) or config.nats_url())


# --- commands --------------------------------------------------------------------------------------


async def _stored_request(settings: NatsSettings, run_id: str, new_run_id: str | None) -> ev.SimRequested:
    """The request a run was made from, as a new run (its files stay in the stack's store)."""
    from simreel.client import Client

    async with await Client.connect(settings) as client:
        original = await client.request_of(run_id)
    if original is None:
        raise SystemExit(f"simreel: no run {run_id!r} in this stack's event log")
    return msgspec.structs.replace(original, run_id=new_run_id or ev.new_id(), event_id=ev.new_id(), ts=time.time())


def _check_store(out: Path, dir_setting: str) -> None:
    """The embedded stack's store, as its services will see it, before anything starts."""
    from simreel.stack import startcheck

    env = dict(os.environ)
    env.setdefault("SIMREEL_STORE_DIR", str(out))
    asyncio.run(startcheck.store(env, dir_setting=dir_setting))


def cmd_run(a: argparse.Namespace) -> int:
    from simreel.stack import startcheck

    if a.again is not None:
        if a.scene is not None:
            raise SystemExit("simreel: --again runs a stored request; name no scene with it")
        if not _bus_configured(a):
            raise SystemExit("simreel: --again needs the stack that ran the run: --nats URL or SIMREEL_NATS_URL")
        settings = _nats_settings(a)
        startcheck.nats(settings, url_setting="--nats / SIMREEL_NATS_URL")
        req = asyncio.run(_stored_request(settings, a.again, a.run_id))
        result = asyncio.run(_submit_and_wait(settings, req, quiet=a.json, timeout=a.timeout))
        _print_result(result, as_json=a.json, out=Path(a.out))
        return 0 if result.ok else 1
    package = pack_scene(a)
    req = build_request(a, package)
    if _bus_configured(a):
        settings = _nats_settings(a)
        startcheck.nats(settings, url_setting="--nats / SIMREEL_NATS_URL")
        result = asyncio.run(_submit_and_wait(settings, req, quiet=a.json, timeout=a.timeout, package=package))
    else:
        from simreel.stack.embedded import Stack

        console = _console()
        out = Path(a.out).resolve()
        _check_store(out, "--out / SIMREEL_STORE_DIR")
        if not a.json:
            console.print(f"starting the embedded stack (nats-server + 4 services); artifacts → {out}")
        env = dict(os.environ)
        allow = allowed_policy(a, package)
        if allow:
            env["SIMREEL_POLICY_ALLOWLIST"] = ",".join(filter(None, [config.policy_allowlist_text(env), allow]))
        # The service logs outlive the stack's temporary state when the run fails: the failure line
        # names the one to read.
        log_dir = Path(tempfile.mkdtemp(prefix="simreel-logs-"))
        try:
            with Stack(out_dir=out, log_dir=log_dir, env=env) as stack:
                result = asyncio.run(_submit_and_wait(NatsSettings(url=stack.url), req, quiet=a.json,
                                                      timeout=a.timeout, package=package))
        except KeyboardInterrupt:
            console.print("interrupted: stopping the stack")
            shutil.rmtree(log_dir, ignore_errors=True)
            return 130
        except Exception as e:
            e.add_note(f"details: {log_dir}")
            raise
        _print_result(result, as_json=a.json, out=Path(a.out))
        if result.ok:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            console.print(f"details: {failed_service_log(result, log_dir)}", markup=False, highlight=False,
                          soft_wrap=True)
        return 0 if result.ok else 1
    _print_result(result, as_json=a.json, out=Path(a.out))
    if not result.ok and result.state and result.state.failed_in:
        _console().print(f"details: the log of the {result.state.failed_in} service", markup=False,
                        highlight=False, soft_wrap=True)
    return 0 if result.ok else 1


def cmd_submit(a: argparse.Namespace) -> int:
    settings = _nats_settings(a)
    if a.again is not None:
        package, req = None, asyncio.run(_stored_request(settings, a.again, a.run_id))
    else:
        package = pack_scene(a)
        req = build_request(a, package)
    if not a.wait:
        from simreel.client import Client

        async def _go() -> str:
            c = await Client.connect(settings)
            try:
                if package is not None:
                    await _upload(c, package)
                return await c.submit(req)
            finally:
                await c.close()

        run_id = asyncio.run(_go())
        sys.stdout.write((json.dumps({"run_id": run_id}) if a.json else run_id) + "\n")
        return 0
    result = asyncio.run(_submit_and_wait(settings, req, quiet=a.json, timeout=a.timeout, package=package))
    _print_result(result, as_json=a.json)
    return 0 if result.ok else 1


def _ui_env(a: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env["SIMREEL_UI_HOST"] = a.ui_host
    env["SIMREEL_UI_PORT"] = str(a.ui_port)
    return env


def cmd_up(a: argparse.Namespace) -> int:
    from simreel.stack import startcheck
    from simreel.stack.embedded import Stack

    console = _console()
    data = Path(a.data).resolve()
    startcheck.writable_dir(data, "--data")
    _check_store(Path(a.out).resolve(), "--out")
    services = list(STACK_SERVICES) + ([] if a.no_ui else ["ui"])
    if not a.no_ui:
        from simreel.runtime.config import UiConfig

        UiConfig.from_env(host=a.ui_host, port=a.ui_port)  # refuses a non-loopback host without a token
    with Stack(data_dir=data, out_dir=Path(a.out).resolve(), nats_port=a.nats_port, services=services,
               env=_ui_env(a)) as stack:
        print(stack.url, flush=True)
        ui = "" if a.no_ui else f" · ui http://{a.ui_host}:{a.ui_port}/"
        console.print(f"simreel stack up: NATS {stack.url}{ui} · data {data} · artifacts {Path(a.out).resolve()} "
                      f"· logs {stack.log_dir}\nsubmit with: SIMREEL_NATS_URL={stack.url} simreel run cartpole\n"
                      "Ctrl-C stops everything.")
        stop = {"flag": False}

        def _stop(*_):
            stop["flag"] = True

        # Ctrl-C too, explicitly: a process started from a script in the background inherits SIGINT
        # ignored, and Python then never raises KeyboardInterrupt ("Ctrl-C stops everything" would not).
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        try:
            while not stop["flag"]:
                for note in stack.restart_exited():
                    console.print(f"{note}; restarted")
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        console.print("stopping")
    return 0


def cmd_ui(a: argparse.Namespace) -> int:
    """The web ui against a running stack (--nats / SIMREEL_NATS_URL), or an embedded stack of its own."""
    import functools

    from simreel.stack import service
    from simreel.runtime.config import Settings, UiConfig
    from simreel.stack.service import main as service_main
    from simreel.store.local import LocalStore

    ui = service.load("ui")
    NAME, run = ui.NAME, ui.run
    ui_config = UiConfig.from_env(host=a.host, port=a.port)  # refuses a non-loopback host without a token
    if _bus_configured(a):
        service_main(NAME, functools.partial(run, config=ui_config),
                     Settings.from_env(nats=NatsSettings.from_env(url=a.nats)))
        return 0
    from simreel.stack.embedded import Stack

    out = Path(a.out).resolve()
    _console().print(f"starting the embedded stack (nats-server + 4 services); artifacts → {out}")
    with Stack(data_dir=Path(a.data).resolve() if a.data else None, out_dir=out) as stack:
        service_main(NAME, functools.partial(run, config=ui_config, store=LocalStore(out)),
                     Settings.from_env(nats=NatsSettings.from_env(url=stack.url)))
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from simreel.runtime.config import Settings

    # The environment is read once, here; --nats overrides it without writing os.environ.
    settings = Settings.from_env(nats=NatsSettings.from_env(url=a.nats))
    names = list(dict.fromkeys(a.service))  # each service once, in the order given
    if len(names) == 1:
        from simreel.stack.service import load
        from simreel.stack.service import main as service_main

        mod = load(names[0])

        service_main(mod.NAME, mod.run, settings)
        return 0
    from simreel.stack.service import main_many

    main_many(names, settings)
    return 0


def cmd_runs(a: argparse.Namespace) -> int:
    from simreel.client import Client

    async def _go():
        c = await Client.connect(_nats_settings(a))
        try:
            return await c.runs()
        finally:
            await c.close()

    runs = asyncio.run(_go())
    if a.json:
        sys.stdout.write(json.dumps([{"run_id": r.run_id, "status": r.status, "scene": r.scene, "session": r.session,
                                      "episodes": r.episodes, "artifacts": r.live_artifact_count, "error": r.error}
                                     for r in runs]) + "\n")
        return 0
    from rich.table import Table

    t = Table(title="runs")
    for col in ("run_id", "status", "scene", "session", "episodes", "artifacts", "error"):
        t.add_column(col)
    for r in runs:
        t.add_row(r.run_id, r.status, r.scene, r.session, str(r.episodes), str(r.live_artifact_count),
                  (r.error or "")[:60])
    _console().print(t)
    return 0


def cmd_rm(a: argparse.Namespace) -> int:
    """Ask retention to delete a run's artifacts, and wait until each one is gone."""
    from simreel.contract import subjects
    from simreel.client import Client
    from simreel.readmodels.projections import RunState

    async def _go() -> tuple[list[str], set[str]]:
        c = await Client.connect(_nats_settings(a))
        try:
            run = RunState(a.run_id)
            async for e in c.bus.replay(subjects.run_artifacts(a.run_id)):
                run.apply(e)
            live = {art.key for art in run.live_artifacts}
            if not live:
                return [], set()
            await c.bus.publish(ev.DeleteRequested(run_id=a.run_id, requested_by=os.environ.get("USER", "")))
            gone: set[str] = set()

            async def _wait() -> None:
                async for e in c.bus.follow(subjects.of_run(ev.ArtifactDeleted, a.run_id)):
                    if isinstance(e, ev.ArtifactDeleted):
                        gone.add(e.key)
                    if live <= gone:
                        return

            try:
                await asyncio.wait_for(_wait(), a.timeout)
            except asyncio.TimeoutError:
                pass
            return sorted(live), gone
        finally:
            await c.close()

    live, gone = asyncio.run(_go())
    missing = [k for k in live if k not in gone]
    if a.json:
        sys.stdout.write(json.dumps({"run_id": a.run_id, "deleted": sorted(set(live) & gone), "pending": missing}) + "\n")
    else:
        _console().print(f"run {a.run_id}: {len(live) - len(missing)} artifact(s) deleted"
                         + (f", {len(missing)} still pending (is a retention service running?)" if missing else ""))
    return 1 if missing else 0


def cmd_retention(a: argparse.Namespace) -> int:
    """Show (--dry-run) or apply the retention policy once, from the event log: the retention
    service's own decisions and deletes, published here since no service handles them."""
    from simreel.stack import service
    from simreel.contract import subjects
    from simreel.client import Client
    from simreel.readmodels.artifact_index import Policy, ArtifactIndex

    policy = Policy(keep_latest=a.keep_latest, max_age_s=a.max_age, max_total_bytes=a.max_bytes)
    if not policy.active:
        raise SystemExit("simreel: give at least one of --keep-latest, --max-age, --max-bytes")

    async def _go():
        c = await Client.connect(_nats_settings(a))
        try:
            index = ArtifactIndex().apply_all([e async for e in c.bus.replay(subjects.ARTIFACT_EVENTS)])
            from simreel.store.settings import store_from_env

            store = store_from_env()
            try:
                retention = service.load("retention").Retention(store, index, policy, dry_run=a.dry_run)
                sessions = [a.session] if a.session else sorted(index.sessions())
                out = [d for s in sessions for d in await retention.enforce(s)]
                if not a.dry_run:
                    await c.bus.publish_all(out)
                return out
            finally:
                await store.close()
        finally:
            await c.close()

    decided = asyncio.run(_go())
    if a.json:
        sys.stdout.write(json.dumps([{"key": d.key, "session": d.session, "run_id": d.run_id, "reason": d.reason}
                                     for d in decided]) + "\n")
        return 0
    from rich.table import Table

    t = Table(title="would delete" if a.dry_run else "deleted")
    for col in ("session", "run_id", "key", "reason"):
        t.add_column(col)
    for d in decided:
        t.add_row(d.session, d.run_id, d.key, d.reason)
    _console().print(t)
    return 0


def cmd_schema(a: argparse.Namespace) -> int:
    sys.stdout.write(json.dumps(ev.json_schema(), indent=2) + "\n")
    return 0


def cmd_scenes(a: argparse.Namespace) -> int:
    from simreel.sim import scenes

    for name in sorted(scenes.BUILTIN):
        print(f"{name:<12} {scenes.BUILTIN[name].description}")
    return 0


def _add_nats_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--nats", required=required, default=None, help="NATS URL (or SIMREEL_NATS_URL)")
    p.add_argument("--creds", default=None, help="NATS credentials file (or SIMREEL_NATS_CREDS)")
    p.add_argument("--user", default=None, help="NATS user (or SIMREEL_NATS_USER)")
    p.add_argument("--password", default=None, help="NATS password (prefer SIMREEL_NATS_PASSWORD)")
    p.add_argument("--tls-ca", default=None, help="CA file for NATS TLS (or SIMREEL_NATS_TLS_CA)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simreel", description="Headless MuJoCo simulation videos over NATS.")
    p.add_argument("--log-level", default=None)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="simulate, encode and store; starts an embedded stack unless a bus is configured")
    _add_request_args(r)
    _add_nats_args(r)
    r.add_argument("--out", default=config.store_dir(),
                   help="artifact directory of the embedded stack")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("submit", help="submit to a running stack")
    _add_request_args(s)
    _add_nats_args(s)
    s.add_argument("--wait", action="store_true", help="wait for the artifacts")
    s.set_defaults(func=cmd_submit)

    u = sub.add_parser("up", help="keep the embedded stack running in the foreground")
    u.add_argument("--nats-port", type=int, default=None)
    u.add_argument("--data", default="simreel-data")
    u.add_argument("--out", default="simreel-out")
    u.add_argument("--no-ui", action="store_true", help="do not start the web ui")
    ui_host, ui_port = config.ui_listen()
    u.add_argument("--ui-host", default=ui_host,
                   help="ui address (not loopback: SIMREEL_UI_TOKEN required)")
    u.add_argument("--ui-port", type=int, default=ui_port)
    u.set_defaults(func=cmd_up)

    w = sub.add_parser("ui", help="web ui: runs live, each episode's video with its telemetry (embedded stack "
                                  "unless a bus is configured)")
    _add_nats_args(w)
    w.add_argument("--host", default=ui_host,
                   help="listen address (not loopback: SIMREEL_UI_TOKEN required)")
    w.add_argument("--port", type=int, default=ui_port)
    w.add_argument("--out", default=config.store_dir(),
                   help="artifact directory of the embedded stack")
    w.add_argument("--data", default=None, help="state directory of the embedded stack (default: temporary)")
    w.set_defaults(func=cmd_ui)

    sv = sub.add_parser("serve", help="run one or more services (as tasks of one process) against any NATS")
    sv.add_argument("service", nargs="+", choices=SERVICES)
    sv.add_argument("--nats", default=None)
    sv.set_defaults(func=cmd_serve)

    rs = sub.add_parser("runs", help="list runs and their status (replays the event log)")
    _add_nats_args(rs)
    rs.add_argument("--json", action="store_true")
    rs.set_defaults(func=cmd_runs)

    rm = sub.add_parser("rm", help="delete a run's artifacts (carried out by the retention service)")
    rm.add_argument("run_id")
    _add_nats_args(rm)
    rm.add_argument("--timeout", type=float, default=60.0)
    rm.add_argument("--json", action="store_true")
    rm.set_defaults(func=cmd_rm)

    rt = sub.add_parser("retention", help="apply a retention policy once (or show what it would delete)")
    _add_nats_args(rt)
    rt.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    rt.add_argument("--keep-latest", type=int, default=0)
    rt.add_argument("--max-age", type=float, default=0.0, help="seconds")
    rt.add_argument("--max-bytes", type=int, default=0)
    rt.add_argument("--session", default=None)
    rt.add_argument("--json", action="store_true")
    rt.set_defaults(func=cmd_retention)

    sc = sub.add_parser("schema", help="print the JSON Schema of the public events")
    sc.set_defaults(func=cmd_schema)

    sn = sub.add_parser("scenes", help="list the builtin scenes")
    sn.set_defaults(func=cmd_scenes)

    try:
        from simreel.bench.cli import register
    except ImportError:
        pass
    else:
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup(args.log_level)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - one line with the cause, never a traceback wall
        from simreel.stack.startcheck import SettingError

        plain = isinstance(e, (ConnectionError, SettingError))  # their message is the whole story
        print(f"simreel: {one_line(e if plain else f'{type(e).__name__}: {e}')}",
              *getattr(e, "__notes__", ()), sep="\n", file=sys.stderr)
        return 2 if plain else 1


if __name__ == "__main__":
    sys.exit(main())
