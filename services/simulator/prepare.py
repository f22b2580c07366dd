"""Everything decided about a request before its render thread starts: limits, streams, the scene
(fetched files, compiled model or Gymnasium env), cameras and the state recorded per frame. The
outcome is a Prepared job for the worker, or the events that refuse the request."""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from simreel.contract import events as ev
from simreel.contract import keep as keeping
from simreel.contract import streams
from simreel.runtime.config import Limits, Settings
from simreel.sim import engines as sim_engines
from simreel.sim import gymenv, loader, state
from simreel.sim.errors import BackendError, SceneError, SceneForbidden

from . import plan
from .scene_cache import SceneCache
from .worker import WorkerJob


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


def refused(req: ev.SimRequested, attempt: int, code: ev.FailureCode, message: str,
            field: str | None = None) -> Refused:
    return Refused([ev.SimFailed.of(req.run_id, attempt, code, message, field)])


async def prepare(req: ev.SimRequested, attempt: int, settings: Settings, scene_cache: SceneCache | None,
                  log) -> Refused | Prepared:
    try:
        plan.check_limits(req, settings.limits)
    except plan.LimitExceeded as e:
        log.warning("request_refused", reason=str(e))
        return refused(req, attempt, "limit_exceeded", str(e), e.field)
    if problem := streams.check_streams(req.render.streams):
        return refused(req, attempt, "bad_request", f"render.streams: {problem}", "render.streams")
    if isinstance(req.outputs.keep, keeping.Producer):
        return refused(req, attempt, "bad_request", "a request's keep rule cannot be \"producer\" "
                       "(only a recorder decides itself)", "outputs.keep")
    if req.scene.startswith(gymenv.GYM_PREFIX):
        return await prepare_gym(req, attempt, settings, log)
    return await prepare_scene(req, attempt, settings, scene_cache, log)


async def prepare_scene(req: ev.SimRequested, attempt: int, settings: Settings, scene_cache: SceneCache | None,
                        log) -> Refused | Prepared:
    """An MJCF scene: its files within limits, compiled, then its cameras and state channels checked."""
    r = req.render
    if problem := stream_unavailable(r.engine, r.streams):
        log.warning("request_refused", reason=problem)
        return refused(req, attempt, "bad_request", problem, "render.streams")
    try:
        plan.check_scene_files(req, settings.limits)
    except plan.LimitExceeded as e:
        log.warning("request_refused", reason=str(e))
        return refused(req, attempt, "limit_exceeded", str(e), e.field)
    try:
        model, label, policy_source = await load_scene(req, settings, scene_cache, log)
    except SceneError as e:
        log.warning("scene_refused", reason=str(e))
        return refused(req, attempt, scene_error_code(e), str(e), "scene")
    if problem := camera_problem(r, loader.camera_names(model), settings.limits):
        return refused(req, attempt, *problem)
    names = state.mujoco_names(model)  # batch engines give each world's qpos/qvel/sensordata too
    try:
        recorded = state_plan(req, {k: v for k, v in names.items() if v}, state.MUJOCO_FIELDS, settings.limits)
    except state.TelemetryFieldError as e:
        return refused(req, attempt, telemetry_code(e), str(e), e.field)
    duration = plan.duration_of(req)
    n_frames = plan.frame_count(duration, req.max_steps, float(model.opt.timestep), r.fps)
    job = WorkerJob(model=model, width=r.width, height=r.height, fps=r.fps, cameras=list(r.cameras),
                    tile=r.tile and len(r.cameras) > 1,
                    free_camera=msgspec.structs.asdict(r.free_camera) if r.free_camera else None,
                    quality=r.quality, seeds=plan.episode_seeds(req), duration_s=duration, max_steps=req.max_steps,
                    policy=req.policy, policy_params=dict(req.policy_params),
                    policy_allow=settings.policy_allowlist, engine=r.engine,
                    engine_options=dict(r.engine_options), max_worlds=settings.limits.max_worlds,
                    state_fields=recorded.fields, policy_source=policy_source,
                    streams=tuple(r.streams))
    return Prepared(job, label, n_frames, recorded)


async def load_scene(req: ev.SimRequested, settings: Settings, scene_cache: SceneCache | None,
                     log) -> tuple[Any, str, bytes | None]:
    """The compiled model, the scene's label and a `file:` policy's source, with the request's files
    local (from the scene cache) while MuJoCo reads them. Raises SceneError."""
    t0 = time.perf_counter()
    async with scene_files(req, scene_cache) as local:
        if req.files and scene_cache is not None:
            s = scene_cache.stats
            log.info("scene_files_ready", files=len(req.files), cache_hits=s.hits, cache_misses=s.misses,
                     fetched_bytes=s.fetched_bytes, seconds=round(time.perf_counter() - t0, 3))
        t1 = time.perf_counter()
        r = req.render
        model, label = await asyncio.to_thread(loader.resolve_scene, req.scene, req.assets,
                                               settings.scene_roots, r.width, r.height, local)
        log.info("scene_loaded", scene=label, seconds=round(time.perf_counter() - t1, 3))
        return model, label, policy_source(req, local)


def scene_files(req: ev.SimRequested, scene_cache: SceneCache | None):
    if scene_cache is None:
        if req.files:
            raise SceneError("this simulator has no scene-file store configured; send the scene inline")
        return contextlib.nullcontext({})
    return scene_cache.files(req.files)


def camera_problem(r: ev.RenderSpec, cameras: list[str], limits: Limits) -> tuple[ev.FailureCode, str, str] | None:
    """Why the requested cameras cannot be rendered from a scene with these cameras: code, message, field."""
    if r.cameras:
        missing = [c for c in r.cameras if c not in cameras]
        if missing:
            return ("bad_request", f"camera {missing[0]!r} is not in the scene (cameras: {', '.join(cameras) or 'none'})",
                    "render.cameras")
        if len(set(r.cameras)) != len(r.cameras):
            return "bad_request", "a camera is named twice", "render.cameras"
    if r.tile and len(r.cameras) > 1 and r.width * len(r.cameras) > limits.max_width:
        return ("limit_exceeded", f"tiling {len(r.cameras)} views of width {r.width} is over the configured limit "
                f"{limits.max_width}", "render.width")
    return None


async def prepare_gym(req: ev.SimRequested, attempt: int, settings: Settings, log) -> Refused | Prepared:
    """gymnasium:<EnvId>: the env's own fps and frame size, frames from env.render(), no scene.xml."""
    r = req.render
    if r.cameras or r.tile:
        return refused(req, attempt, "bad_request", "gymnasium scenes take camera_name/camera_id in "
                       "env_kwargs, not render.cameras", "render.cameras")
    if r.engine != "gl":
        return refused(req, attempt, "bad_request", "gymnasium scenes are rendered by the env itself: "
                       f"render.engine must be 'gl', not {r.engine!r}", "render.engine")
    if extra := [x for x in r.streams if x != "rgb"]:
        return refused(req, attempt, "bad_request", f"gymnasium scenes render through the env's "
                       f"render(), which gives rgb frames only: the {extra[0]!r} stream cannot be "
                       "recorded (simreel.gym.RecordVideo records depth from MuJoCo envs)", "render.streams")
    try:
        factory, info = await asyncio.to_thread(gymenv.open_gym_scene, req.scene, req.env_kwargs, r.width, r.height)
    except SceneError as e:
        log.warning("scene_refused", reason=str(e))
        return refused(req, attempt, scene_error_code(e), str(e), "scene")
    except BackendError as e:
        return refused(req, attempt, "render_failed", str(e))
    obs = {"obs": [str(i) for i in range(info.get("obs_size") or 0)]} if info.get("obs_size") else {}
    try:
        recorded = state_plan(req, obs, state.GYM_FIELDS, settings.limits)
    except state.TelemetryFieldError as e:
        return refused(req, attempt, telemetry_code(e), str(e), e.field)
    duration = plan.duration_of(req)
    n_frames, _ = gymenv.plan_episode(duration, req.max_steps, info["fps"])
    job = WorkerJob(model=None, width=info["width"], height=info["height"], fps=info["fps"], cameras=[],
                    tile=False, free_camera=None, quality=r.quality, seeds=plan.episode_seeds(req),
                    duration_s=duration, max_steps=req.max_steps, policy=req.policy,
                    policy_params=dict(req.policy_params), policy_allow=(), env_factory=factory,
                    physics_dt=info["dt"], state_fields=recorded.fields)
    return Prepared(job, info["label"], n_frames, recorded)


def state_plan(req: ev.SimRequested, available: dict[str, list[str]], defaults: tuple[str, ...],
               limits: Limits) -> state.StatePlan:
    """The state channels this run records per frame (none without telemetry)."""
    if not req.outputs.telemetry:
        return state.StatePlan()
    return state.plan(available, req.outputs.telemetry_fields, defaults, limits.max_telemetry_values)


def stream_unavailable(engine: str, wanted: list[str]) -> str | None:
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


def scene_error_code(e: SceneError) -> ev.FailureCode:
    return "scene_forbidden" if isinstance(e, SceneForbidden) else "scene_invalid"


def telemetry_code(e: Exception) -> ev.FailureCode:
    return "limit_exceeded" if isinstance(e, state.TelemetryTooLarge) else "bad_request"


def policy_source(req: ev.SimRequested, local) -> bytes | None:
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
