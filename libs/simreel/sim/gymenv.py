"""`scene="gymnasium:<EnvId>"`: a Gymnasium env as the simulator's physics + render loop.

`GymEpisodeRunner` has the interface of `simreel.sim.rollout.EpisodeRunner` (run_episode → on_frame
per frame → EpisodeSummary, `.gl`, `.close()`), so the simulator's worker thread drives either one.
What differs is who owns time: the env steps at its own `dt` and renders at its own
`metadata["render_fps"]`, so frame k is the env's state after k steps and the video plays at the
env's fps — whatever the request asked for (the runner reports the fps it uses in `.fps`).

Wiring in the simulator (the handler runs the first call off the event loop, the rest in the worker
thread, because the env's GL context belongs to the thread that renders)::

    factory, info = await asyncio.to_thread(open_gym_scene, req.scene, req.env_kwargs, r.width, r.height)
    # SimStarted: fps=info["fps"], width=info["width"], height=info["height"], physics_dt=info["dt"]
    # in the worker thread:
    runner = GymEpisodeRunner(factory, width=info["width"], height=info["height"], fps=info["fps"])
    policy = make_policy(req.policy, runner.action_space, seed=seed, params=req.policy_params)
    summary = runner.run_episode(seed=seed, policy=policy, duration_s=..., max_steps=..., on_frame=...)
    runner.close()

Safety (DESIGN §7): only ids in Gymnasium's registry (no `module:Env` imports), and no kwargs that
name files (`xml_file`, anything path-like): a request must not read the simulator's disk.
"""
from __future__ import annotations

import copy
import difflib
import functools
import math
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from simreel.runtime import log
from simreel.sim.errors import BackendError, PolicyError, SceneError, SceneForbidden
from simreel.sim.rollout import EpisodeSummary, FrameOut, FrameStats

__all__ = ["GymEpisodeRunner", "GymEpisodeSummary", "GYM_PREFIX", "make_policy", "open_gym_scene", "parse_scene",
           "FrameOut", "GYM_POLICIES"]

_log = log.get(__name__)

GYM_PREFIX = "gymnasium:"
GYM_POLICIES = ("zero", "random", "sine")
# Keyword arguments the request may not set: we set them, or they read files on the simulator host.
_RESERVED_KWARGS = {"render_mode", "width", "height"}
_FILE_KWARGS = {"xml_file", "model_path", "fullpath", "filename", "file", "path"}

GymPolicy = Callable[[Any, float], Any]  # (observation, t) -> action


def _gym():
    try:
        import gymnasium
    except ImportError as e:  # pragma: no cover - gymnasium is an optional dependency
        raise SceneError("gymnasium scenes need Gymnasium: pip install 'simreel[gym]'") from e
    return gymnasium


def parse_scene(spec: str, allow: Collection[str] | None = None) -> str:
    """`gymnasium:HalfCheetah-v5` → `HalfCheetah-v5`, refusing ids Gymnasium would import a module for."""
    gym = _gym()
    env_id = spec[len(GYM_PREFIX):] if spec.startswith(GYM_PREFIX) else spec
    env_id = env_id.strip()
    if not env_id:
        raise SceneError(f"scene {spec!r}: expected gymnasium:<EnvId>, e.g. gymnasium:HalfCheetah-v5")
    if ":" in env_id or ("/" in env_id and env_id not in gym.registry):
        raise SceneForbidden(f"scene {spec!r}: only registered Gymnasium ids are allowed (no module imports)")
    if allow is not None and env_id not in allow:
        raise SceneForbidden(f"scene {spec!r} is not in this simulator's Gymnasium allow-list")
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SceneError(f"scene {spec!r}: {env_id!r} is not a registered Gymnasium env{hint}")
    return env_id


def _check_kwargs(env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = dict(env_kwargs or {})
    reserved = sorted(set(kwargs) & _RESERVED_KWARGS)
    if reserved:
        raise SceneForbidden(f"env_kwargs may not set {', '.join(reserved)}: use render.width/height "
                         "(render_mode is always rgb_array)")

    def pathlike(v: Any) -> bool:
        return isinstance(v, str) and ("/" in v or "\\" in v or v.startswith(("~", ".")) or v.endswith(".xml"))

    for k, v in kwargs.items():
        if k in _FILE_KWARGS or pathlike(v):
            raise SceneForbidden(f"env_kwargs[{k!r}] refused: requests may not name files on the simulator host")
    return kwargs


def _check_camera(env, kwargs: Mapping[str, Any]) -> None:
    """MuJoCo aborts the whole process on a camera id it does not have (mju_error in
    mjv_cameraFrustum), and silently uses the free camera for an unknown name: check both first."""
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    model = getattr(env.unwrapped, "model", None)
    if renderer is None or model is None:
        return
    import mujoco

    names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
    listing = ", ".join(n or f"#{i}" for i, n in enumerate(names)) or "none"
    name = kwargs.get("camera_name")
    if name is not None and name not in names:
        raise SceneError(f"env_kwargs camera_name={name!r} is not in the scene (cameras: {listing})")
    cam = getattr(renderer, "camera_id", None)
    if cam is not None and not -1 <= int(cam) < model.ncam:
        raise SceneError(f"env_kwargs camera_id={cam} is out of range: the scene has {model.ncam} camera(s) "
                         f"({listing}); -1 is the free camera")


def _make(env_id: str, kwargs: Mapping[str, Any]):
    return _gym().make(env_id, render_mode="rgb_array", **kwargs)


def open_gym_scene(spec: str, env_kwargs: Mapping[str, Any] | None, width: int, height: int, *,
                   allow: Collection[str] | None = None) -> tuple[Callable[[], Any], dict[str, Any]]:
    """Validate a `gymnasium:<EnvId>` scene and probe it once (make, reset, render one frame, close).

    Returns `(env_factory, info)`: call `env_factory()` in the thread that will render (GL contexts are
    per thread). `info` holds `fps` (int, the env's render_fps: the video's rate), `dt` (seconds per env
    step), `width`/`height` (what the env really renders: envs without width/height kwargs keep their
    own size), `label`, `env_id`, `max_episode_steps`, `action_space`, `sized_by_env`. Raises SceneError
    (unknown id, refused kwargs, no rgb_array) or BackendError (cannot render).
    """
    env_id = parse_scene(spec, allow)
    kwargs = _check_kwargs(env_kwargs or {})
    sized = {**kwargs, "width": int(width), "height": int(height)}
    try:
        env = _make(env_id, sized)
        chosen, sized_by_env = sized, False
    except TypeError as e:
        if "width" not in str(e) and "height" not in str(e):
            raise SceneError(f"gymnasium:{env_id}: {e}") from None
        try:
            env = _make(env_id, kwargs)
        except TypeError as e2:
            raise SceneError(f"gymnasium:{env_id}: {e2}") from None
        chosen, sized_by_env = kwargs, True
    except _gym().error.Error as e:
        raise SceneError(f"gymnasium:{env_id}: {e}") from None
    try:
        _check_camera(env, kwargs)
        if "rgb_array" not in (env.metadata.get("render_modes") or []):
            raise SceneError(f"gymnasium:{env_id} cannot render rgb_array frames "
                             f"(render modes: {env.metadata.get('render_modes')})")
        env.reset(seed=0)
        try:
            frame = env.render()
        except _gym().error.DependencyNotInstalled as e:
            raise SceneError(f"gymnasium:{env_id} cannot render on this simulator: {e}") from None
        except Exception as e:  # GL context creation is the usual culprit for MuJoCo envs
            remedy = "; set MUJOCO_GL=egl or MUJOCO_GL=osmesa" if hasattr(env.unwrapped, "mujoco_renderer") else ""
            raise BackendError(f"gymnasium:{env_id} failed to render: {type(e).__name__}: {e}{remedy}") from e
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] not in (3, 4) or frame.dtype != np.uint8:
            raise SceneError(f"gymnasium:{env_id} renders {frame.shape} {frame.dtype}; expected HxWx3 uint8")
        fps_raw, fps, dt = env_timing(env)
        info = {
            "env_id": env_id,
            "label": f"{GYM_PREFIX}{env_id}",
            "fps": fps,
            "fps_exact": float(fps_raw),
            "dt": dt,
            "width": int(frame.shape[1]),
            "height": int(frame.shape[0]),
            "sized_by_env": sized_by_env,
            "max_episode_steps": getattr(env.spec, "max_episode_steps", None),
            "action_space": str(env.action_space),
            "obs_size": observation_size(env.observation_space),
            "env_kwargs": dict(kwargs),
        }
    finally:
        env.close()
    return functools.partial(_make, env_id, chosen), info


def env_timing(env) -> tuple[float, int, float]:
    """(render_fps as the env says it, the video's whole fps, seconds per step): one frame per env
    step at the env's own `metadata["render_fps"]` (else 1/dt, else 30)."""
    dt = getattr(env.unwrapped, "dt", None)
    fps_raw = float(env.metadata.get("render_fps") or (1.0 / dt if dt else 30))
    fps = max(1, int(round(fps_raw)))
    return fps_raw, fps, float(dt) if dt else 1.0 / fps


def plan_episode(duration_s: float | None, max_steps: int | None, fps: int) -> tuple[int, int]:
    """(frames, steps) of an episode at most — termination may end it sooner. Same rule as
    EpisodeRunner with one frame per step: duration → round(duration·fps) frames and as many steps;
    max_steps → max_steps steps and max_steps + 1 frames (the reset frame included). The runner
    follows it and the simulator announces its frame count in SimStarted."""
    if duration_s is None and max_steps is None:
        raise ValueError("give duration_s or max_steps")
    n_frames, steps = math.inf, math.inf
    if duration_s is not None:
        n_frames = steps = round(duration_s * fps)
    if max_steps is not None:
        n_frames, steps = min(n_frames, int(max_steps) + 1), min(steps, int(max_steps))
    return int(n_frames), int(steps)


# --- policies ------------------------------------------------------------------------------------


def _box_bounds(space) -> tuple[np.ndarray, np.ndarray]:
    low = np.where(np.isfinite(space.low), space.low, -1.0).astype(float)
    high = np.where(np.isfinite(space.high), space.high, 1.0).astype(float)
    return low, high


def make_policy(name: str, action_space, *, seed: int, params: Mapping[str, Any] | None = None) -> GymPolicy:
    """A per-episode policy `(obs, t) -> action` for a Gymnasium action space.

    `zero`: zeros (clipped into the space; Discrete → its first action); `random`: `action_space.sample()`
    from a copy of the space seeded with the episode seed (the env's own space is left alone); `sine`:
    per-dimension phase-shifted sines over a Box (params `amplitude` 0..1, `frequency_hz`).
    """
    gym = _gym()
    spaces = gym.spaces
    params = dict(params or {})
    if name == "zero":
        if params:
            raise PolicyError(f"policy 'zero': unknown parameter(s) {sorted(params)}")
        if isinstance(action_space, spaces.Box):
            zero = np.clip(np.zeros(action_space.shape), action_space.low, action_space.high).astype(action_space.dtype)
        elif isinstance(action_space, spaces.Discrete):
            zero = action_space.start
        elif isinstance(action_space, spaces.MultiDiscrete):
            zero = np.asarray(action_space.start, dtype=action_space.dtype)
        elif isinstance(action_space, spaces.MultiBinary):
            zero = np.zeros(action_space.shape, dtype=action_space.dtype)
        else:
            raise PolicyError(f"policy 'zero' does not support {action_space}; use 'random'")
        return lambda obs, t: zero
    if name == "random":
        if params:
            raise PolicyError(f"policy 'random': unknown parameter(s) {sorted(params)}")
        space = copy.deepcopy(action_space)
        space.seed(int(seed))
        return lambda obs, t: space.sample()
    if name == "sine":
        unknown = set(params) - {"amplitude", "frequency_hz"}
        if unknown:
            raise PolicyError(f"policy 'sine': unknown parameter(s) {sorted(unknown)}; "
                              "accepted: amplitude, frequency_hz")
        if not isinstance(action_space, spaces.Box):
            raise PolicyError(f"policy 'sine' needs a continuous (Box) action space, got {action_space}")
        amp = float(params.get("amplitude", 0.8))
        freq = float(params.get("frequency_hz", 0.5))
        if not 0 <= amp <= 1 or not (math.isfinite(freq) and freq > 0):
            raise PolicyError("policy 'sine': amplitude must be 0..1 and frequency_hz > 0")
        low, high = _box_bounds(action_space)
        center, half = (low + high) / 2, (high - low) / 2
        n = max(int(np.prod(action_space.shape)), 1)
        phase = (2 * math.pi * np.arange(n) / n).reshape(action_space.shape)
        omega = 2 * math.pi * freq
        return lambda obs, t: (center + amp * half * np.sin(omega * t + phase)).astype(action_space.dtype)
    raise PolicyError(f"unknown policy {name!r} for a gymnasium scene; use one of {', '.join(GYM_POLICIES)}")


# --- the runner ----------------------------------------------------------------------------------


@dataclass
class GymEpisodeSummary(EpisodeSummary):
    """EpisodeSummary plus how the env ended it (MuJoCo scenes always end by time: truncated)."""

    terminated: bool = False
    truncated: bool = False


def _action_list(action: Any) -> list[float]:
    try:
        return np.asarray(action, dtype=float).ravel().tolist()
    except (TypeError, ValueError):
        return []


def observation_list(space: Any, obs: Any) -> list[float]:
    """An observation as a flat list of numbers (dict and tuple spaces flattened as Gymnasium does)."""
    try:
        flat = _gym().spaces.flatten(space, obs)
    except Exception:  # noqa: BLE001 - an odd space: fall back to whatever numbers the obs holds
        flat = obs
    try:
        return np.asarray(flat, dtype=float).ravel().tolist()
    except (TypeError, ValueError):
        return []


def observation_size(space: Any) -> int:
    try:
        return int(_gym().spaces.flatdim(space))
    except Exception:  # noqa: BLE001 - spaces without a flat form record no observation
        return 0


class GymEpisodeRunner:
    """Episodes of a Gymnasium env, rendered with `env.render()`, in the thread that creates it.

    `env` is an env factory (from `open_gym_scene`) or a `gymnasium:<EnvId>` string. `fps` is what
    the request asked for; the env's own render fps is used and exposed as `.fps` (a warning is logged
    when they differ). `camera`/`quality` exist for interface parity and are ignored: Gymnasium's
    MuJoCo envs take `camera_name`/`camera_id` in env_kwargs instead.
    """

    def __init__(self, env: str | Callable[[], Any], *, width: int, height: int, fps: float | None = None,
                 camera: Any = None, quality: str = "full", env_kwargs: Mapping[str, Any] | None = None,
                 observe: bool = False, **_ignored: Any) -> None:
        """`observe`: put the flattened observation into each FrameOut's `state` as "obs"."""
        self._thread = threading.get_ident()
        self.observe = bool(observe)
        factory = env
        if isinstance(env, str):
            factory, info = open_gym_scene(env, env_kwargs, width, height)
            width, height = info["width"], info["height"]
        self.width, self.height = int(width), int(height)
        self.env = factory()
        _, self.fps, self.dt = env_timing(self.env)
        if fps is not None and int(round(fps)) != self.fps:
            _log.info("gym_fps_used", requested=fps, used=self.fps, reason="frames come at the env's render_fps")
        if camera is not None or quality != "full":
            _log.info("gym_render_options_ignored", camera=camera, quality=quality,
                      hint="pass camera_name/camera_id in env_kwargs")
        # Bring the renderer (and its GL context) up here, so .gl is known before the first episode.
        self.env.reset(seed=0)
        self._check_frame(self.env.render())
        self.gl = self._gl_info()

    @property
    def action_space(self):
        return self.env.action_space

    def _gl_info(self) -> dict[str, Any]:
        if getattr(self.env.unwrapped, "mujoco_renderer", None) is None:
            return {"backend": "none", "vendor": "", "renderer": "env.render()", "version": "", "software": True}
        try:
            from simreel.sim.gl import gl_info

            return gl_info()
        except Exception as e:  # noqa: BLE001 - informative only
            return {"backend": os.environ.get("MUJOCO_GL", ""), "vendor": "", "renderer": f"unknown ({e})",
                    "version": "", "software": None}

    def _check_thread(self) -> None:
        if threading.get_ident() != self._thread:
            raise RuntimeError("GymEpisodeRunner must be used and closed in the thread that created it "
                               "(the env's GL context is bound to that thread)")

    def _check_frame(self, frame: Any) -> np.ndarray:
        if not isinstance(frame, np.ndarray):
            raise SceneError(f"env.render() returned {type(frame).__name__}, expected an HxWx3 uint8 array")
        if frame.ndim == 3 and frame.shape[2] == 4:
            frame = frame[..., :3]
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise SceneError(f"env.render() returned {frame.shape} {frame.dtype}; expected "
                             f"({self.height}, {self.width}, 3) uint8 (the size announced in SimStarted)")
        return frame

    def plan(self, duration_s: float | None = None, max_steps: int | None = None) -> tuple[int, int]:
        """(frames, steps) at most at this env's fps (`plan_episode`)."""
        return plan_episode(duration_s, max_steps, self.fps)

    def run_episode(self, *, seed: int, policy: GymPolicy | str, duration_s: float | None = None,
                    max_steps: int | None = None, on_frame: Callable[[FrameOut], None],
                    should_stop: Callable[[], bool] = lambda: False,
                    policy_params: Mapping[str, Any] | None = None) -> GymEpisodeSummary:
        """Reset with `seed`, step with `policy(obs, t)` (or a builtin policy name), call `on_frame` for
        the reset frame and after each step, until terminated/truncated, duration or max_steps."""
        self._check_thread()
        if self.env is None:
            raise RuntimeError("GymEpisodeRunner is closed")
        if isinstance(policy, str):
            policy = make_policy(policy, self.action_space, seed=seed, params=policy_params)
        n_frames, total_steps = self.plan(duration_s, max_steps)
        env, stats = self.env, FrameStats(self.width, self.height)
        render_s = physics_s = 0.0
        step, frames, ret, since = 0, 0, 0.0, 0.0
        terminated = truncated = stopped = False
        action_list: list[float] = []

        def emit() -> None:
            nonlocal render_s, frames, since
            t0 = time.perf_counter()
            frame = self._check_frame(env.render())
            render_s += time.perf_counter() - t0
            stats.update(frame)
            state = {"obs": observation_list(env.observation_space, obs)} if self.observe else None
            on_frame(FrameOut(frames, frames / self.fps, step, frame, since, action_list, state))
            frames += 1
            since = 0.0

        t0 = time.perf_counter()
        obs, _ = env.reset(seed=int(seed))
        physics_s += time.perf_counter() - t0
        if n_frames > 0:
            if should_stop():
                stopped = True
            else:
                emit()
        while not stopped and step < total_steps and not (terminated or truncated):
            if frames < n_frames and should_stop():
                stopped = True
                break
            try:
                action = policy(obs, step * self.dt)
            except PolicyError:
                raise
            except Exception as e:
                raise PolicyError(f"policy failed at step {step}: {type(e).__name__}: {e}") from e
            t0 = time.perf_counter()
            obs, reward, terminated, truncated, _ = env.step(action)
            physics_s += time.perf_counter() - t0
            step += 1
            r = float(reward)
            ret += r
            since += r
            action_list = _action_list(action)
            if frames < n_frames:
                emit()
        return GymEpisodeSummary(
            seed=int(seed), steps=step, frames=frames, sim_time=step * self.dt, return_=ret,
            render_ms_total=render_s * 1e3, physics_ms_total=physics_s * 1e3, blank=stats.black,
            frozen=stats.frozen, warnings=stats.warnings() if stats.frames else [], max_frame_time_offset=0.0, stopped=stopped, terminated=bool(terminated),
            truncated=bool(truncated) or not terminated)

    def close(self) -> None:
        """Close the env (and its renderer's GL context) — in the creating thread. Idempotent."""
        if self.env is not None:
            self._check_thread()
            self.env.close()
            self.env = None

    def __enter__(self) -> "GymEpisodeRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
