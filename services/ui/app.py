"""The ui's HTTP surface: pages, a JSON API over the read model, artifact serving, SSE, and the writes.

Everything here is given its collaborators (`Live`, a store, a `publish` function, previews), so the
whole API is testable without NATS; `service.py` wires it to the bus.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

import msgspec
from aiohttp import web

from simreel.contract import events as ev
from simreel.contract import keep as keeping
from simreel.runtime import log as logs
from simreel.readmodels.projections import RunFilter, RunState
from simreel.runtime.config import UiConfig
from simreel.contract.scene_name import scene_name
from simreel.sim.package import sha256_file
from simreel.store.base import ArtifactStore, StoreError, check_key

from . import security, stream_files, telemetry
from .live import Live
from .preview import Previews
from .submission import TooLarge, check_scene, default_scenes, field_of, read_submission, referenced

log = logs.get("ui")

STATIC = Path(__file__).parent / "static"
Publish = Callable[[ev.Event], Awaitable[Any]]



class SceneFiles(Protocol):
    """What the ui uses of the scene-file store (simreel.transport.scenefiles.SceneFileStore)."""

    async def upload(self, local: dict[str, Path], files: dict[str, ev.SceneFile]) -> Any: ...

    async def missing(self, files: dict[str, ev.SceneFile]) -> dict[str, ev.SceneFile]: ...


def _manifest(files: dict[str, Path]) -> dict[str, ev.SceneFile]:
    return {p: ev.SceneFile(sha256=sha256_file(f), size=f.stat().st_size) for p, f in sorted(files.items())}


# Artifact kinds of the depth and segmentation files: (stream, role on the run page).
_STREAM_KINDS = {"depth": ("depth", "data"), "depth_preview": ("depth", "preview"),
                 "segmentation": ("segmentation", "data"), "segmentation_preview": ("segmentation", "preview")}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(data), status=status, content_type="application/json")


def _error(message: str, status: int = 400, **extra: Any) -> web.Response:
    return _json({"error": message, **extra}, status=status)


class Ui:
    def __init__(self, live: Live, store: ArtifactStore, publish: Publish, config: UiConfig = UiConfig(),
                 previews: Previews | None = None, scenes: Callable[[], dict[str, list[str]]] | None = None,
                 scene_files: SceneFiles | None = None) -> None:
        self.scene_files = scene_files
        self.live = live
        self.store = store
        self.publish = publish
        self.config = config
        self.previews = previews
        self.scenes = scenes or default_scenes
        self._telemetry: OrderedDict[str, bytes] = OrderedDict()  # encoded columns, by artifact and episode
        self._stream_frames: OrderedDict[str, list] = OrderedDict()  # decoded depth / segmentation files
        self._streams: set[web.StreamResponse] = set()
        self._scenes_cache: dict[str, list[str]] | None = None

    # --- wiring ------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[security.middleware(self.config.token)],
                              client_max_size=self.config.max_upload_bytes)
        r = app.router
        r.add_get("/", self.page("runs.html"))
        r.add_get("/runs/{run_id}", self.page("run.html"))
        r.add_get("/new", self.page("new.html"))
        r.add_get("/static/{name}", self.static)
        r.add_get("/api/runs", self.list_runs)
        r.add_get("/api/runs/{run_id}", self.run_detail)
        r.add_get("/api/runs/{run_id}/request", self.run_request)
        r.add_get("/api/runs/{run_id}/telemetry", self.run_telemetry)
        r.add_get("/api/runs/{run_id}/text/{kind}", self.run_text)
        r.add_get("/api/runs/{run_id}/pixels", self.run_pixels)
        r.add_get("/api/scenes", self.list_scenes)
        r.add_get("/api/events", self.sse)
        r.add_get("/files/{key:.+}", self.file)
        r.add_post("/api/runs", self.submit)
        r.add_post("/api/runs/{run_id}/delete", self.delete)
        r.add_get("/api/recorders", self.list_recorders)
        r.add_post("/api/recorders/{run_id}/control", self.control_recorder)
        r.add_post("/api/recorders/{run_id}/keep", self.keep_rule)
        app.on_shutdown.append(self._close_streams)
        return app

    def page(self, name: str):
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

        return handler

    async def static(self, request: web.Request) -> web.StreamResponse:
        """Scripts and styles of the pages, by plain name only (no paths, no other files)."""
        name = request.match_info["name"]
        if not re.fullmatch(r"[A-Za-z0-9_.-]+\.(js|css)", name) or not (STATIC / name).is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    # --- reading -----------------------------------------------------------------------------------

    def _run(self, request: web.Request) -> RunState:
        run_id = request.match_info["run_id"]
        if not ev.is_run_id(run_id):
            raise web.HTTPBadRequest(text=json.dumps({"error": f"not a run id: {run_id[:80]!r}"}),
                                     content_type="application/json")
        state = self.live.index.runs.get(run_id)
        if state is None:
            raise web.HTTPNotFound(text=json.dumps({"error": f"no run {run_id}"}), content_type="application/json")
        return state

    async def list_runs(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            offset = max(0, int(q.get("offset", 0)))
            limit = min(self.config.page_limit, max(1, int(q.get("limit", 50))))
        except ValueError:
            return _error("offset and limit must be integers")
        if q.get("keep", "") not in ("", "kept", "discarded"):
            return _error("keep must be kept or discarded", field="keep")
        flt = RunFilter(session=q.get("session", ""), status=q.get("status", ""), scene=q.get("scene", ""),
                        tag=q.get("tag", ""), keep=q.get("keep", ""))
        total, runs = self.live.index.page(flt, offset=offset, limit=limit)
        return _json({"total": total, "offset": offset, "limit": limit, "runs": [r.summary() for r in runs],
                      "facets": self.live.index.facets(), "replaying": not self.live.caught_up.is_set()})

    async def run_detail(self, request: web.Request) -> web.Response:
        s = self._run(request)
        return _json(self.detail(s))

    def detail(self, s: RunState) -> dict[str, Any]:
        live = {a.key: a for a in s.live_artifacts}
        arts = []
        for a in sorted(s.artifacts.values(), key=lambda a: (a.kind, -1 if a.episode is None else a.episode, a.key)):
            arts.append({"key": a.key, "kind": a.kind, "format": a.format, "episode": a.episode, "camera": a.camera,
                         "bytes": a.bytes, "sha256": a.sha256, "content_type": a.content_type,
                         "href": f"/files/{a.key}", "deleted": a.key not in live})
        videos = {}
        for v in s.videos.values():
            if v.format != "mp4" or v.stream != "rgb":
                continue
            stored = next((a for a in live.values() if a.kind == "video" and a.episode == v.episode
                           and a.camera == v.camera), None)
            # depth / segmentation of the same video: its colour preview to show, its lossless file to read
            streams = {}
            for a in live.values():
                if a.episode == v.episode and a.camera == v.camera and a.kind in _STREAM_KINDS:
                    name, role = _STREAM_KINDS[a.kind]
                    streams.setdefault(name, {})[role] = f"/files/{a.key}"
                    if role == "data":
                        streams[name]["key"] = a.key
            videos.setdefault("all" if v.episode is None else str(v.episode), []).append({
                "camera": v.camera, "href": f"/files/{stored.key}" if stored else None, "codec": v.codec,
                "av1": "av1" in v.codec.lower(), "frames": v.frames, "fps": v.fps, "width": v.width,
                "height": v.height, "duration_s": v.duration_s, "sha256": v.sha256, "spans": msgspec.to_builtins(v.spans),
                "identical_to": self._identical(s.run_id, v.sha256), "streams": streams})

        def fate(episode: int) -> dict[str, Any]:
            d = s.kept.get(episode) or s.discarded.get(episode)
            if d is None:
                return {"kept": None}
            return {"kept": isinstance(d, ev.EpisodeKept), "rule": d.rule, "reason": d.reason}

        episodes = [{"episode": e.episode, "seed": e.seed, "steps": e.steps, "return": e.episode_return,
                     "frames": e.frames, "terminated": e.terminated, "truncated": e.truncated, "blank": e.blank,
                     "frozen": e.frozen, "warnings": e.warnings, "sim_time_s": e.sim_time_s, "wall_s": e.wall_s,
                     **fate(e.episode)}
                    for e in sorted(s.episode_ends.values(), key=lambda e: e.episode)]
        kinds = {a.kind: a.key for a in live.values() if a.kind in ("report", "scene", "telemetry")}
        return {"summary": s.summary(), "fps": s.fps, "frames_per_episode": s.frames_per_episode,
                "gl_backend": s.gl_backend, "gl_renderer": s.gl_renderer, "episodes": episodes, "videos": videos,
                "artifacts": arts, "has": sorted(kinds),
                "deletions": [{"key": d.key, "reason": d.reason, "ts": d.ts} for d in s.deletions.values()],
                "delete_requested": s.delete_requested is not None,
                "request": _request_summary(s.request)}

    def _identical(self, run_id: str, sha: str) -> list[str]:
        """Other runs whose video has exactly these bytes (same request and seed → same video)."""
        out = []
        for other in self.live.index.runs.values():
            if other.run_id != run_id and any(v.sha256 == sha for v in other.videos.values()):
                out.append(other.run_id)
                if len(out) >= 5:
                    break
        return out

    async def run_request(self, request: web.Request) -> web.Response:
        s = self._run(request)
        if s.request is None:
            return _error(f"run {s.run_id} has no request in the event log (a recorder run?)", 404)
        raw = msgspec.to_builtins(s.request)
        for k in ("type", "event_id", "run_id", "ts", "v"):
            raw.pop(k, None)
        return _json(raw)

    async def _read(self, key: str) -> bytes:
        try:
            return await self.store.read(key, self.config.max_read_bytes)
        except FileNotFoundError:
            raise web.HTTPNotFound(text=json.dumps({"error": f"{key} is gone from the store"}),
                                   content_type="application/json") from None
        except StoreError as e:
            raise web.HTTPBadGateway(text=json.dumps({"error": str(e)}), content_type="application/json") from None

    def _artifact(self, s: RunState, kind: str):
        a = next((a for a in s.live_artifacts if a.kind == kind), None)
        if a is None:
            raise web.HTTPNotFound(text=json.dumps({"error": f"run {s.run_id} has no {kind}"}),
                                   content_type="application/json")
        return a

    async def run_telemetry(self, request: web.Request) -> web.Response:
        s = self._run(request)
        raw_ep = request.query.get("episode", "0")
        try:
            episode = None if raw_ep == "all" else int(raw_ep)
        except ValueError:
            return _error("episode must be an integer or 'all'")
        a = self._artifact(s, "telemetry")
        cache_key = f"{a.key}:{a.sha256}:{raw_ep}"
        body = self._telemetry.get(cache_key)
        if body is None:
            data = await self._read(a.key)

            def columns() -> bytes | None:
                try:
                    cols = telemetry.parse(data, episode).columns(episode)
                except KeyError:
                    return None
                cols["fps"] = s.fps
                return msgspec.json.encode(cols)

            body = await asyncio.to_thread(columns)
            if body is None:
                return _error(f"run {s.run_id} has no telemetry for episode {episode}", 404)
            self._telemetry[cache_key] = body
            while len(self._telemetry) > 32:
                self._telemetry.popitem(last=False)
        else:
            self._telemetry.move_to_end(cache_key)
        resp = web.Response(body=body, content_type="application/json")
        resp.enable_compression()  # columns of numbers shrink ~3× with gzip
        return resp

    async def run_pixels(self, request: web.Request) -> web.Response:
        """One frame of a depth or segmentation file, as stored (base64 of the little-endian planes),
        for the run page to read the value under the pointer: `?key=<artifact key>&frame=<index>`."""
        s = self._run(request)
        key = request.query.get("key", "")
        a = s.artifacts.get(key)
        if a is None or key in s.deleted or a.kind not in ("depth", "segmentation"):
            return _error(f"run {s.run_id} has no depth or segmentation file {key[:200]!r}", 404)
        try:
            index = int(request.query.get("frame", "0"))
        except ValueError:
            return _error("frame must be an integer")
        frames = self._stream_frames.get(f"{key}:{a.sha256}")
        if frames is None:
            data = await self._read(key)
            frames = await asyncio.to_thread(stream_files.decode, data)
            self._stream_frames[f"{key}:{a.sha256}"] = frames
            while len(self._stream_frames) > 4:
                self._stream_frames.popitem(last=False)
        if not 0 <= index < len(frames):
            return _error(f"frame {index} is not in {key} ({len(frames)} frames)", 404)
        return _json(stream_files.frame_json(a.kind, frames[index], index))

    async def run_text(self, request: web.Request) -> web.Response:
        s = self._run(request)
        kind = request.match_info["kind"]
        if kind not in ("report", "scene"):
            return _error("kind must be report or scene", 404)
        a = self._artifact(s, kind)
        data = await self._read(a.key)
        return web.Response(body=data, content_type="application/json" if kind == "report" else "text/plain",
                            charset="utf-8")

    async def file(self, request: web.Request) -> web.StreamResponse:
        """An artifact of a known run, by key: local files with Range support, S3 by presigned redirect."""
        key = request.match_info["key"]
        try:
            check_key(key)
        except ValueError as e:
            return _error(str(e))
        parts = key.split("/")
        state = self.live.index.runs.get(parts[2]) if len(parts) == 5 else None
        stored = state.artifacts.get(key) if state else None
        if stored is None or key in state.deleted:
            return _error(f"no stored artifact {key}", 404)
        path_of = getattr(self.store, "path", None)
        if path_of is None:
            raise web.HTTPFound(self.store.url(key))
        try:
            path = path_of(key)
        except ValueError as e:
            return _error(str(e))
        if not path.is_file():
            return _error(f"{key} is gone from the store", 404)
        name = parts[-1]
        headers = {"Cache-Control": "private, max-age=3600"}
        if request.query.get("download"):
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        resp = web.FileResponse(path, headers=headers)
        resp.content_type = stored.content_type or "application/octet-stream"
        return resp

    async def list_scenes(self, request: web.Request) -> web.Response:
        if self._scenes_cache is None:
            self._scenes_cache = await asyncio.to_thread(self.scenes)
        return _json({**self._scenes_cache, "limits": {"max_scene_file_bytes": self.config.max_scene_file_bytes,
                                                       "max_scene_bytes": self.config.max_scene_bytes}})

    # --- live --------------------------------------------------------------------------------------

    async def sse(self, request: web.Request) -> web.StreamResponse:
        run_id = request.query.get("run") or None
        if run_id is not None and not ev.is_run_id(run_id):
            return _error("not a run id")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no", **security.HEADERS})
        await resp.prepare(request)
        sub = self.live.subscribe(run_id)
        self._streams.add(resp)
        watching = run_id is not None and self.previews is not None
        if watching:
            state = self.live.index.runs.get(run_id)
            if state is None or not state.finished:
                self.previews.watch(run_id)
            else:
                watching = False
        try:
            await resp.write(b"event: hello\ndata: {}\n\n")
            while True:
                try:
                    kind, data = await asyncio.wait_for(sub.queue.get(), 15.0)
                except asyncio.TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                await resp.write(b"event: " + kind.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n")
                if kind in ("reload", "bye"):
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.live.unsubscribe(sub)
            self._streams.discard(resp)
            if watching:
                self.previews.unwatch(run_id)
        return resp

    async def _close_streams(self, app: web.Application) -> None:
        for s in list(self.live.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                s.queue.put_nowait(("bye", {}))

    # --- writing (events only) ---------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.Response:
        """A new run from the form: the contract's own validation, errors with the field path; an
        uploaded robot is checked by the simulator's loader and its files go to the scene-file store."""
        cfg = self.config
        try:
            raw, upload = await read_submission(request, cfg.max_upload_bytes, max_scene_bytes=cfg.max_scene_bytes,
                                                max_file_bytes=cfg.max_scene_file_bytes)
        except TooLarge:
            return _error(f"upload over the per-scene cap of {cfg.max_scene_bytes} bytes (SIMREEL_MAX_SCENE_BYTES "
                          "raises it)", 413, field="scene_file")
        except ValueError as e:
            return _error(str(e), field=getattr(e, "field", None))
        try:
            if not raw.get("run_id"):
                raw.pop("run_id", None)
            try:
                req = msgspec.convert({**raw, "type": "SimRequested"}, ev.SimRequested)
            except msgspec.ValidationError as e:
                return _error(str(e), field=field_of(str(e)))
            if upload is not None:
                try:
                    entry = upload.entry()
                except ValueError as e:
                    return _error(str(e), field=getattr(e, "field", None))
                problem = await asyncio.to_thread(check_scene, entry, upload.files, req.render.width,
                                                  req.render.height)
                if problem:
                    return _error(problem, field="scene_file")
                if self.scene_files is None:
                    return _error("this ui has no scene-file store to upload to", 503, field="scene_file")
                needed = await asyncio.to_thread(referenced, entry, upload.files)
                manifest = await asyncio.to_thread(_manifest, needed)
                await self.scene_files.upload(needed, manifest)
                req = msgspec.structs.replace(req, scene=entry, files=manifest)
            elif req.files:
                if self.scene_files is None:
                    return _error("this ui has no scene-file store", 503, field="scene")
                gone = await self.scene_files.missing(req.files)
                if gone:
                    return _error(f"{len(gone)} of this scene's files are no longer in the scene-file store; "
                                  "upload the robot again", field="scene")
        finally:
            if upload is not None:
                upload.close()
        req = req.with_request_id()
        if req.run_id in self.live.index.runs:
            return _error(f"run {req.run_id} exists already", 409, field="run_id")
        await self.publish(req)
        log.info("run_submitted", run_id=req.run_id, scene=scene_name(req.scene), files=len(req.files))
        return _json({"run_id": req.run_id, "href": f"/runs/{req.run_id}"}, status=202)

    async def delete(self, request: web.Request) -> web.Response:
        s = self._run(request)
        if not s.live_artifacts:
            return _error(f"run {s.run_id} has no stored artifacts to delete", 409)
        e = ev.DeleteRequested(run_id=s.run_id, requested_by="ui")
        await self.publish(e)
        log.info("delete_requested", run_id=s.run_id)
        return _json({"run_id": s.run_id, "event_id": e.event_id, "artifacts": len(s.live_artifacts)}, status=202)


    async def list_recorders(self, request: web.Request) -> web.Response:
        recs = sorted(self.live.recorders.values(), key=lambda r: -(r.announced.ts if r.announced else 0))
        if request.query.get("all") != "1":
            recs = [r for r in recs if r.announced and r.announced.state == "running"]
        return _json({"recorders": [r.summary() for r in recs]})

    def _not_running(self, rid: str) -> web.Response | None:
        """Why a live recorder cannot take a request now (unknown, or no longer running), or None."""
        rec = self.live.recorders.get(rid)
        if rec is None or rec.announced is None:
            return _error(f"no recorder {rid[:80]!r}", 404)
        if rec.announced.state != "running":
            return _error(f"recorder {rid} is {rec.announced.state}", 409)
        return None

    async def control_recorder(self, request: web.Request) -> web.Response:
        """Steer a live recorder; it applies the request at its next episode boundary."""
        rid = request.match_info["run_id"]
        if (refused := self._not_running(rid)) is not None:
            return refused
        try:
            body = await request.json()
            e = msgspec.convert({**body, "type": "CaptureControlRequested", "run_id": rid, "requested_by": "ui"},
                                ev.CaptureControlRequested)
        except ValueError as err:
            return _error(str(err), field=field_of(str(err)))
        if e.action == "every" and e.every is None:
            return _error("'every' needs a number of episodes", field="every")
        await self.publish(e)
        log.info("capture_control_requested", recorder_id=rid, action=e.action, every=e.every)
        return _json({"recorder_id": rid, "event_id": e.event_id}, status=202)

    async def keep_rule(self, request: web.Request) -> web.Response:
        """Give a live recorder another keep rule (`{"keep": rule}`, or `{"keep": null}` to keep every
        candidate); it applies it at its next episode boundary."""
        rid = request.match_info["run_id"]
        if (refused := self._not_running(rid)) is not None:
            return refused
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError('send {"keep": rule} or {"keep": null}')
            e = msgspec.convert({"keep": body.get("keep"), "type": "KeepRuleRequested", "run_id": rid,
                                 "requested_by": "ui"}, ev.KeepRuleRequested)
        except ValueError as err:
            return _error(str(err), field=field_of(str(err)))
        if isinstance(e.keep, keeping.Producer):
            return _error("a producer rule is the recorder's own callable; choose a rule", field="keep")
        await self.publish(e)
        log.info("keep_rule_requested", recorder_id=rid, rule=keeping.describe(e.keep) if e.keep else "")
        return _json({"recorder_id": rid, "event_id": e.event_id}, status=202)


def _request_summary(r: ev.SimRequested | None) -> dict[str, Any] | None:
    if r is None:
        return None
    out = msgspec.to_builtins(r)
    for k in ("type", "event_id", "v"):
        out.pop(k, None)
    out["assets"] = sorted(r.assets)
    out["scene_name"] = scene_name(r.scene)
    if len(r.scene) > 200:
        out["scene"] = "inline MJCF"
    return out
