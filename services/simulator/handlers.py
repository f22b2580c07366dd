"""SimRequested → SimStarted, FrameBatch…, EpisodeEnded…, SceneSaved, SimCompleted (or SimFailed).

The delivery count of the request is the attempt number: a simulator that dies mid-run leaves the
request unacked, JetStream redelivers it, and the next attempt publishes frames on new subjects, so
the stale frames of the dead attempt are never mixed in.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import threading
import time
from dataclasses import dataclass
from typing import AsyncIterator

import msgspec
import numpy as np

from simreel.contract import events as ev
from simreel.contract import keep as keeping
from simreel.runtime import log as logs
from simreel.contract import streams, subjects
from simreel.transport.bus import Delivery, HandlerBus
from simreel.runtime.config import Settings
from simreel.transport.handoff import Handoff
from simreel.transport.staging import Staging
from simreel.transport.run_publisher import EpisodeOutcome, RunKeeper, RunPublisher
from simreel.sim.errors import BackendError, PolicyError, SceneError, SceneForbidden
from simreel.sim import engines as sim_engines
from simreel.sim import gymenv, loader, perception, state

from . import plan
from .scene_cache import SceneCache
from .worker import (EpisodeRendered, FrameRendered, RendererReady, WorkerDone, WorkerFailed, WorkerJob,
                     WorkerMessage, run_in_thread)


@dataclass(frozen=True, slots=True)
class Refused:
    """The request ends before any rendering: these events say why (or nothing, if already handled)."""

    events: list[ev.Event]


@dataclass(frozen=True, slots=True)
class Prepared:
    job: WorkerJob
    label: str  # the scene's name in events and the report
    n_frames: int  # frames per episode (an upper bound for Gymnasium scenes, which may end sooner)
    recorded: state.StatePlan  # the state channels recorded per frame


class Simulator:
    def __init__(self, bus: HandlerBus, settings: Settings, staging: Staging, scene_cache: SceneCache | None = None) -> None:
        self.bus = bus
        self.settings = settings
        self.staging = staging
        self.scene_cache = scene_cache

    def _scene_files(self, req: ev.SimRequested):
        if self.scene_cache is None:
            if req.files:
                raise SceneError("this simulator has no scene-file store configured; send the scene inline")
            return contextlib.nullcontext({})
        return self.scene_cache.files(req.files)

    def _failed(self, req: ev.SimRequested, attempt: int, code: ev.FailureCode, message: str,
                field: str | None = None) -> ev.SimFailed:
        return ev.SimFailed.of(req.run_id, attempt, code, message, field)

    async def on_sim_requested(self, req: ev.SimRequested, delivery: Delivery) -> AsyncIterator[ev.Event]:
        """Yields SimStarted, each EpisodeEnded as its episode ends, then SceneSaved and SimCompleted;
        or one SimFailed (or a DeadLettered for a duplicate request)."""
        log = logs.get("simulator", run_id=req.run_id, attempt=delivery.attempt)
        match await self._prepare(req, delivery, log):
            case Refused(events):
                for e in events:
                    yield e
            case Prepared() as prepared:
                async for e in self._run(req, delivery.attempt, prepared, log):
                    yield e

    async def _prepare(self, req: ev.SimRequested, delivery: Delivery, log) -> "Refused | Prepared":
        """Everything decided before the render thread starts: history, limits, scene, cameras."""
        attempt = delivery.attempt
        history = await self._history(req.run_id)
        if history:
            verdict = _judge_history(history, delivery)
            if verdict == "done":  # this message's own earlier attempt finished; only its ack was lost
                log.info("request_already_handled", history=history)
                return Refused([])
            if verdict == "duplicate":
                kinds = ", ".join(f"Sim{k.capitalize()} (seq {seq})" for k, seq in sorted(history.items()))
                reason = (f"duplicate SimRequested for run {req.run_id!r} (stream seq {delivery.stream_seq}): the run "
                          f"already has {kinds} from an earlier request; a run id is used once - submit with a new "
                          "run_id")
                log.warning("duplicate_request_refused", reason=reason)
                # run_id 'unknown': a dead letter under the run's own id would mark the original run failed.
                return Refused([ev.DeadLettered.of(f"simulator-{delivery.stream_seq}", service="simulator",
                                                   subject=delivery.subject, reason=reason,
                                                   deliveries=delivery.attempt, payload=ev.encode(req))])
        try:
            plan.check_limits(req, self.settings.limits)
        except plan.LimitExceeded as e:
            log.warning("request_refused", reason=str(e))
            return Refused([self._failed(req, attempt, "limit_exceeded", str(e), e.field)])
        if problem := streams.check_streams(req.render.streams):
            return Refused([self._failed(req, attempt, "bad_request", f"render.streams: {problem}", "render.streams")])
        if isinstance(req.outputs.keep, keeping.Producer):
            return Refused([self._failed(req, attempt, "bad_request", "a request's keep rule cannot be \"producer\" "
                                         "(only a recorder decides itself)", "outputs.keep")])
        if req.scene.startswith(gymenv.GYM_PREFIX):
            return await self._prepare_gym(req, attempt, log)
        r = req.render
        if problem := _stream_unavailable(r.engine, r.streams):
            log.warning("request_refused", reason=problem)
            return Refused([self._failed(req, attempt, "bad_request", problem, "render.streams")])
        try:
            plan.check_scene_files(req, self.settings.limits)
        except plan.LimitExceeded as e:
            log.warning("request_refused", reason=str(e))
            return Refused([self._failed(req, attempt, "limit_exceeded", str(e), e.field)])
        try:
            t0 = time.perf_counter()
            async with self._scene_files(req) as local:
                if req.files and self.scene_cache is not None:
                    s = self.scene_cache.stats
                    log.info("scene_files_ready", files=len(req.files), cache_hits=s.hits, cache_misses=s.misses,
                             fetched_bytes=s.fetched_bytes, seconds=round(time.perf_counter() - t0, 3))
                t1 = time.perf_counter()
                model, label = await asyncio.to_thread(loader.resolve_scene, req.scene, req.assets,
                                                       self.settings.scene_roots, r.width, r.height, local)
                log.info("scene_loaded", scene=label, seconds=round(time.perf_counter() - t1, 3))
                policy_source = _policy_source(req, local)
        except SceneError as e:
            code = "scene_forbidden" if isinstance(e, SceneForbidden) else "scene_invalid"
            log.warning("scene_refused", reason=str(e))
            return Refused([self._failed(req, attempt, code, str(e), "scene")])
        cameras = loader.camera_names(model)
        if r.cameras:
            missing = [c for c in r.cameras if c not in cameras]
            if missing:
                return Refused([self._failed(req, attempt, "bad_request",
                                             f"camera {missing[0]!r} is not in the scene (cameras: {', '.join(cameras) or 'none'})",
                                             "render.cameras")])
            if len(set(r.cameras)) != len(r.cameras):
                return Refused([self._failed(req, attempt, "bad_request", "a camera is named twice", "render.cameras")])
        tile = r.tile and len(r.cameras) > 1
        if tile and r.width * len(r.cameras) > self.settings.limits.max_width:
            return Refused([self._failed(req, attempt, "limit_exceeded",
                                         f"tiling {len(r.cameras)} views of width {r.width} is over the configured limit "
                                         f"{self.settings.limits.max_width}", "render.width")])
        names = state.mujoco_names(model)  # batch engines give each world's qpos/qvel/sensordata too
        try:
            recorded = self._state_plan(req, {k: v for k, v in names.items() if v}, state.MUJOCO_FIELDS)
        except state.TelemetryFieldError as e:
            return Refused([self._failed(req, attempt, _telemetry_code(e), str(e), e.field)])
        dt = float(model.opt.timestep)
        duration = plan.duration_of(req)
        n_frames = plan.frame_count(duration, req.max_steps, dt, r.fps)
        seeds = plan.episode_seeds(req)
        job = WorkerJob(model=model, width=r.width, height=r.height, fps=r.fps, cameras=list(r.cameras), tile=tile,
                        free_camera=msgspec.structs.asdict(r.free_camera) if r.free_camera else None,
                        quality=r.quality, seeds=seeds, duration_s=duration, max_steps=req.max_steps,
                        policy=req.policy, policy_params=dict(req.policy_params),
                        policy_allow=self.settings.policy_allowlist, engine=r.engine,
                        engine_options=dict(r.engine_options), max_worlds=self.settings.limits.max_worlds,
                        state_fields=recorded.fields, policy_source=policy_source,
                        streams=tuple(r.streams))
        return Prepared(job, label, n_frames, recorded)

    def _state_plan(self, req: ev.SimRequested, available: dict[str, list[str]],
                    defaults: tuple[str, ...]) -> state.StatePlan:
        """The state channels this run records per frame (none without telemetry)."""
        if not req.outputs.telemetry:
            return state.StatePlan()
        return state.plan(available, req.outputs.telemetry_fields, defaults,
                          self.settings.limits.max_telemetry_values)

    async def _prepare_gym(self, req: ev.SimRequested, attempt: int, log) -> "Refused | Prepared":
        """gymnasium:<EnvId>: the env's own fps and frame size, frames from env.render(), no scene.xml."""
        r = req.render
        if r.cameras or r.tile:
            return Refused([self._failed(req, attempt, "bad_request", "gymnasium scenes take camera_name/camera_id in "
                                         "env_kwargs, not render.cameras", "render.cameras")])
        if r.engine != "gl":
            return Refused([self._failed(req, attempt, "bad_request", "gymnasium scenes are rendered by the env itself: "
                                         f"render.engine must be 'gl', not {r.engine!r}", "render.engine")])
        if extra := [x for x in r.streams if x != "rgb"]:
            return Refused([self._failed(req, attempt, "bad_request", f"gymnasium scenes render through the env's "
                                         f"render(), which gives rgb frames only: the {extra[0]!r} stream cannot be "
                                         "recorded (simreel.gym.RecordVideo records depth from MuJoCo envs)",
                                         "render.streams")])
        try:
            factory, info = await asyncio.to_thread(gymenv.open_gym_scene, req.scene, req.env_kwargs, r.width,
                                                    r.height)
        except SceneError as e:
            log.warning("scene_refused", reason=str(e))
            code = "scene_forbidden" if isinstance(e, SceneForbidden) else "scene_invalid"
            return Refused([self._failed(req, attempt, code, str(e), "scene")])
        except BackendError as e:
            return Refused([self._failed(req, attempt, "render_failed", str(e))])
        obs = {"obs": [str(i) for i in range(info.get("obs_size") or 0)]} if info.get("obs_size") else {}
        try:
            recorded = self._state_plan(req, obs, state.GYM_FIELDS)
        except state.TelemetryFieldError as e:
            return Refused([self._failed(req, attempt, _telemetry_code(e), str(e), e.field)])
        duration = plan.duration_of(req)
        n_frames, _ = gymenv.plan_episode(duration, req.max_steps, info["fps"])
        job = WorkerJob(model=None, width=info["width"], height=info["height"], fps=info["fps"], cameras=[],
                        tile=False, free_camera=None, quality=r.quality, seeds=plan.episode_seeds(req),
                        duration_s=duration, max_steps=req.max_steps, policy=req.policy,
                        policy_params=dict(req.policy_params), policy_allow=(), env_factory=factory,
                        physics_dt=info["dt"], state_fields=recorded.fields)
        return Prepared(job, info["label"], n_frames, recorded)

    async def _history(self, run_id: str) -> dict[str, int]:
        """Stream sequence of the last SimStarted / SimCompleted / SimFailed of the run, by kind."""
        found: dict[str, int] = {}
        for kind, event_type in (("started", ev.SimStarted), ("completed", ev.SimCompleted), ("failed", ev.SimFailed)):
            last = await self.bus.last_event(subjects.of_run(event_type, run_id))
            if last is not None:
                found[kind] = last.seq
        return found

    async def _run(self, req: ev.SimRequested, attempt: int, prepared: "Prepared", log) -> AsyncIterator[ev.Event]:
        job, label, n_frames, recorded = prepared.job, prepared.label, prepared.n_frames, prepared.recorded
        views = len(job.cameras) if (len(job.cameras) > 1 and not job.tile) else 1
        frame_w = job.width * (len(job.cameras) if job.tile else 1)
        pub = RunPublisher(self.bus, run_id=req.run_id, attempt=attempt, session=req.session, fps=job.fps,
                           frame_width=frame_w, frame_height=job.height * views,
                           inflight_bytes=self.settings.inflight_bytes,
                           compression=self.settings.frame_compression, streams=job.streams)
        handoff: Handoff[WorkerMessage] = Handoff(asyncio.get_running_loop(), max_items=self.settings.frame_queue)
        cancel = threading.Event()
        thread = run_in_thread(job, handoff, cancel)
        gl: dict = {}
        engine: dict = {}
        perceived: ev.Perception | None = None
        # With more streams than rgb, SimStarted waits for the first frame, which fixes the run's
        # depth preview range.
        pending = False

        def started(first_frame: bytes | None) -> ev.SimStarted:
            nonlocal perceived
            preview = None
            if first_frame is not None and "depth" in job.streams:
                depth = streams.planes(first_frame, frame_w, job.height * views, job.streams)["depth"]
                preview = perception.preview_range(np.frombuffer(depth, "<u2"), perception.clip_planes(job.model))
            perceived = perception.perception(job.model, job.streams, preview_m=preview)
            return pub.started(
                scene=label, episodes=req.episodes, frames_per_episode=[n_frames] * req.episodes,
                width=frame_w if job.tile else job.width, height=job.height, outputs=req.outputs,
                cameras=job.cameras, views=views, tile=job.tile, physics_dt=_physics_dt(job), gl=gl,
                engine=job.engine, worlds=engine.get("worlds", 1),
                telemetry_names=recorded.names if req.outputs.telemetry else None, perception=perceived)

        keeper = RunKeeper(req.outputs.keep, pub) if req.outputs.keep is not None else None
        try:
            while True:
                message = await handoff.get()
                if pending and not isinstance(message, (RendererReady, WorkerFailed)):
                    pending = False
                    yield started(message.pixels if isinstance(message, FrameRendered) else None)
                match message:
                    case FrameRendered(episode, index, t, pixels, telemetry):
                        await pub.frame(episode, index, t, pixels, telemetry)
                    case EpisodeRendered(episode, s):
                        warnings = list(s.warnings)
                        outcome = EpisodeOutcome(
                            seed=s.seed, steps=s.steps, frames=s.frames, episode_return=s.return_,
                            terminated=getattr(s, "terminated", False), truncated=getattr(s, "truncated", True),
                            sim_time_s=s.sim_time, wall_s=(s.render_ms_total + s.physics_ms_total) / 1000,
                            blank=s.blank, frozen=s.frozen, warnings=warnings)
                        yield (await pub.end_episode(
                            episode, outcome, {"render_ms": round(s.render_ms_total, 1),
                                               "physics_ms": round(s.physics_ms_total, 1)}))
                        for decided in keeper.ended(episode, outcome) if keeper else ():
                            yield decided
                        log.info("episode_ended", episode=episode, frames=s.frames, steps=s.steps, blank=s.blank,
                                 frozen=s.frozen)
                        if warnings:
                            log.warning("blank_or_frozen_frames", episode=episode, warnings=warnings)
                        if req.fail_on_blank and (s.blank or s.frozen):
                            cancel.set()
                            await pub.abort(episode + 1)
                            yield self._failed(req, attempt, "blank_frames",
                                               f"episode {episode}: {'; '.join(warnings)}", "fail_on_blank")
                            return
                    case RendererReady(gl, engine):
                        if len(job.streams) > 1:
                            pending = True
                        else:
                            yield started(None)
                        log.info("sim_started", gl_backend=gl.get("backend"), gl_renderer=gl.get("renderer"),
                                 engine=engine.get("engine"), worlds=engine.get("worlds"),
                                 warmup_s=engine.get("warmup_s"), frames_per_episode=n_frames, episodes=req.episodes)
                    case WorkerFailed(err):
                        log.error("sim_failed", error=f"{type(err).__name__}: {err}")
                        await pub.abort(len(pub.episodes))
                        code = "policy_forbidden" if isinstance(err, PolicyError) else (
                            "scene_invalid" if isinstance(err, SceneError) else "render_failed")
                        yield self._failed(req, attempt, code, f"{type(err).__name__}: {err}",
                                           "policy" if code == "policy_forbidden" else None)
                        return
                    case WorkerDone():
                        break
        finally:
            cancel.set()
            await asyncio.to_thread(thread.join, 10)
        # Gymnasium scenes have no MJCF of ours to save.
        scene_event = await self._save_scene(req, attempt, job) if job.model is not None else None
        report = pub.report(scene=label, gl=gl, render={"width": job.width, "height": job.height, "fps": job.fps,
                                                        "cameras": job.cameras, "tile": job.tile,
                                                        "quality": job.quality},
                            physics_dt=_physics_dt(job),
                            extra={"request": _request_summary(req), "frames_per_episode": n_frames,
                                   "engine": engine, "telemetry_fields": list(recorded.fields),
                                   **({"streams": streams.report(job.streams, perceived, width=frame_w, height=job.height * views)}
                                      if len(job.streams) > 1 else {}),
                                   **({"telemetry_skipped": recorded.skipped} if recorded.skipped else {})})
        for decided in keeper.close() if keeper else ():
            yield decided  # worst/best k over the run: decided now, before SimCompleted
        completed = await pub.completed(req, report, scene_saved=scene_event is not None)
        log.info("sim_completed", frames=completed.frames, wall_s=round(completed.wall_s, 2))
        if scene_event is not None:
            yield scene_event
        yield completed

    async def _save_scene(self, req: ev.SimRequested, attempt: int, job: WorkerJob) -> ev.SceneSaved:
        xml = await asyncio.to_thread(loader.compiled_xml, job.model)
        data = xml.encode()
        p = self.staging.tempdir() / "scene.xml"
        p.write_bytes(data)
        ref = await self.staging.put(f"{req.run_id}/{attempt}/scene.xml", p)
        return ev.SceneSaved(event_id=f"scene-{req.run_id}-{attempt}", run_id=req.run_id, attempt=attempt,
                             session=req.session, staged=ref, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def _telemetry_code(e: Exception) -> ev.FailureCode:
    return "limit_exceeded" if isinstance(e, state.TelemetryTooLarge) else "bad_request"


_ERROR_PATH = re.compile(r"- at `\$\.?([^`]*)`")


def refuse_undecodable_request(data: bytes, error: Exception, delivery: Delivery) -> list[ev.Event]:
    """A SimRequested that does not decode (`"render": {"width": 100000}`, `"episodes": "three"`)
    still names its run: the requester hears why on its run's own subjects, with the decoder's
    field path and limit, instead of waiting forever. Anything without a readable run id stays a
    dead letter only."""
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return []
    if not isinstance(raw, dict) or raw.get("type", "SimRequested") != "SimRequested":
        return []
    try:
        run_id = msgspec.convert(raw.get("run_id"), ev.RunId)
    except msgspec.ValidationError:
        return []
    where = _ERROR_PATH.search(str(error))
    return [ev.SimFailed.of(run_id, delivery.attempt, "bad_request", f"invalid SimRequested: {error}",
                            where.group(1) if where and where.group(1) else None)]


def _judge_history(history: dict[str, int], delivery: Delivery) -> str:
    """What to do with a request whose run id already has events: 'run', 'done' or 'duplicate'.

    A first delivery of a message for a run that already has a story is a duplicate (published after
    JetStream's 2-minute duplicate window, or with another event id). A redelivery (a simulator died
    mid-run, attempt n+1) sees events newer than its own message: it runs again, unless its earlier
    attempt already finished (completed or failed) and only the ack was lost. Events older than the
    message belong to an earlier request: duplicate.
    """
    if delivery.attempt <= 1 or any(seq < delivery.stream_seq for seq in history.values()):
        return "duplicate"
    last = max(history, key=history.get)
    return "done" if last in ("completed", "failed") else "run"


def _stream_unavailable(engine: str, wanted: list[str]) -> str | None:
    """Why the engine cannot render one of the streams, before anything is rendered."""
    if wanted == ["rgb"]:
        return None
    try:
        can = sim_engines.streams_of(engine)
    except sim_engines.EngineUnavailable:
        return None  # the engine itself fails when it starts, with its reason
    missing = [x for x in wanted if x not in can]
    if missing:
        return (f"render engine {engine!r} cannot render the {missing[0]!r} stream "
                f"(it renders: {', '.join(can)})")
    return None


def _physics_dt(job: WorkerJob) -> float:
    return float(job.model.opt.timestep) if job.model is not None else job.physics_dt


def _request_summary(req: ev.SimRequested) -> dict:
    d = msgspec.to_builtins(req)
    d.pop("assets", None)
    if isinstance(d.get("scene"), str) and len(d["scene"]) > 200:
        d["scene"] = d["scene"][:200] + "…"
    d["asset_names"] = sorted(req.assets)
    return d


def _policy_source(req: ev.SimRequested, local) -> bytes | None:
    """The content of a `file:<path>:function` policy, from the request's (fetched) files."""
    from simreel.sim.policies import file_policy_parts

    parts = file_policy_parts(req.policy)
    if parts is None:
        return None
    data = local.get(parts[0])
    if data is None:
        data = req.assets.get(parts[0])
    if data is None:
        raise SceneError(f"policy file {parts[0]!r} is not among the request's files")
    return data.read_bytes() if hasattr(data, "read_bytes") else bytes(data)
