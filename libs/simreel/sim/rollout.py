"""The physics + render loop. It runs in ONE worker thread of the simulator (DESIGN §1).

A GL context belongs to the thread that created it, so an `EpisodeRunner` must be created, used and
closed in the same thread; it checks this and refuses otherwise.

Timing (DESIGN §5): frame k is rendered at simulated time exactly k/fps. Physics steps at
`model.opt.timestep`; the step at which frame k is taken is computed with exact rational arithmetic
(`FrameSchedule.step_for`), so there is no float drift however long the episode. When the timestep
does not divide 1/fps, frame k is taken at the first step whose time is >= k/fps and the largest such
lag is reported in `EpisodeSummary.max_frame_time_offset`.

Frame count rule:
  * `duration_s`: n = round(duration_s * fps) frames, at t = 0, 1/fps, ..., (n-1)/fps; physics then
    runs on to t = n/fps, so the episode covers exactly n frame intervals (the video's duration).
  * `max_steps`: physics runs max_steps steps; frames for every k with k/fps <= max_steps * dt.
  * both: whichever ends first.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, Sequence

import mujoco
import numpy as np

from simreel.runtime import log
from simreel.contract import streams
from simreel.media.stats import FrameStats
from simreel.sim.errors import BackendError, PolicyError, SceneError
from simreel.sim.gl import REMEDY, gl_info
from simreel.sim.loader import camera_names, ensure_offscreen
from simreel.sim.policies import Policy

__all__ = [
    "EpisodeRunner",
    "EpisodeSummary",
    "FrameOut",
    "FrameSchedule",
    "FrameStats",
    "apply_quality",
    "make_renderer",
    "make_camera",
    "camera_names",
    "seed_world",
]

_log = log.get(__name__)

Quality = Literal["full", "fast"]
CameraSpec = str | int | Mapping[str, Any] | mujoco.MjvCamera | None
_DENOM = 1_000_000  # timesteps and fps are read as the nearest fraction with denominator <= 1e6


@dataclass(frozen=True)
class FrameSchedule:
    """Which physics step each frame is rendered at, in exact rational arithmetic."""

    dt: Fraction
    fps: Fraction

    @classmethod
    def of(cls, timestep: float, fps: float) -> "FrameSchedule":
        if not timestep > 0 or not fps > 0:
            raise ValueError(f"timestep and fps must be > 0, got {timestep} and {fps}")
        return cls(Fraction(timestep).limit_denominator(_DENOM), Fraction(fps).limit_denominator(_DENOM))

    def step_for(self, k: int) -> int:
        """First step count whose sim time (steps*dt) is >= k/fps."""
        return math.ceil(Fraction(k) / (self.fps * self.dt))

    def frame_time(self, k: int) -> float:
        return float(Fraction(k) / self.fps)

    def offset(self, k: int) -> float:
        """How late (seconds) frame k is taken relative to k/fps; 0 when dt divides 1/fps."""
        return float(self.step_for(k) * self.dt - Fraction(k) / self.fps)

    def plan(self, duration_s: float | None = None, max_steps: int | None = None) -> tuple[int, int]:
        """(number of frames, number of physics steps) for an episode; see the module docstring."""
        if duration_s is None and max_steps is None:
            raise ValueError("give duration_s or max_steps")
        n_frames, steps = math.inf, math.inf
        if duration_s is not None:
            if not duration_s >= 0 or not math.isfinite(duration_s):
                raise ValueError(f"duration_s must be >= 0, got {duration_s}")
            n_frames = round(Fraction(duration_s).limit_denominator(_DENOM) * self.fps)
            steps = self.step_for(n_frames)
        if max_steps is not None:
            if int(max_steps) < 0:
                raise ValueError(f"max_steps must be >= 0, got {max_steps}")
            n_frames = min(n_frames, math.floor(int(max_steps) * self.dt * self.fps) + 1)
            steps = min(steps, int(max_steps))
        return int(n_frames), int(steps)


@dataclass(slots=True)
class FrameOut:
    """One rendered frame, handed to `on_frame` *synchronously*.

    !!! `pixels` is the runner's reused HxWx3 uint8 buffer: it is overwritten by the next frame.
    !!! Copy it (`bytes(pixels)`, `pixels.copy()`) before on_frame returns if you keep it.
    """

    index: int
    t: float  # exactly index/fps
    step: int  # physics steps taken before this frame
    pixels: np.ndarray
    reward: float  # reward accumulated since the previous frame (-|ctrl|^2 * dt per step)
    action: list[float]
    state: dict[str, list[float]] | None = None  # the runner's state_fields at this frame (qpos, qvel, …)
    # Depth (uint16, simreel.contract.streams) and segmentation (bgra-packed ids) planes of the same instant
    # and layout as `pixels`, when the runner records them; reused buffers too.
    planes: dict[str, np.ndarray] | None = None


@dataclass
class EpisodeSummary:
    seed: int
    steps: int
    frames: int
    sim_time: float
    return_: float
    render_ms_total: float
    physics_ms_total: float
    blank: bool  # every frame a uniform fill: nothing was drawn (media.stats)
    frozen: bool  # >= 2 frames and all identical to the first
    max_frame_time_offset: float
    stopped: bool = False  # should_stop() ended the episode early
    warnings: list[str] = field(default_factory=list)  # blank/frozen, with the remedy
    physics_warnings: dict[str, int] = field(default_factory=dict)


def apply_quality(scene: mujoco.MjvScene, quality: str) -> None:
    """`fast` drops shadows and reflections, the costliest passes on software GL (EpisodeRunner also
    turns multisampling off for it). Together ~5-10x faster on llvmpipe."""
    if quality not in ("full", "fast"):
        raise ValueError(f"quality must be 'full' or 'fast', got {quality!r}")
    on = quality == "full"
    scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = on
    scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = on


def make_renderer(model: mujoco.MjModel, width: int, height: int, quality: Quality = "full") -> mujoco.Renderer:
    """A mujoco.Renderer for width×height in the calling thread, set up for `quality`.

    Grows the model's offscreen buffer if needed. "fast" also drops multisampling, which is fixed
    when the offscreen buffer is created: the model field is lowered only while the renderer is built.
    """
    if quality not in ("full", "fast"):
        raise ValueError(f"quality must be 'full' or 'fast', got {quality!r}")
    ensure_offscreen(model, width, height)
    samples = model.vis.quality.offsamples
    if quality == "fast":
        model.vis.quality.offsamples = 0
    try:
        renderer = mujoco.Renderer(model, height=height, width=width)
    except Exception as e:  # context creation: EGL/OSMesa missing or broken
        raise BackendError(f"cannot create an OpenGL context: {type(e).__name__}: {e}; {REMEDY}") from e
    finally:
        model.vis.quality.offsamples = samples
    apply_quality(renderer.scene, quality)
    return renderer


_FREE_KEYS = ("distance", "azimuth", "elevation", "lookat")


def make_camera(model: mujoco.MjModel, camera: CameraSpec = None) -> mujoco.MjvCamera:
    """An MjvCamera from a request's camera field.

    None → the scene's first named camera, else MuJoCo's default free camera; a name (or "free");
    a camera id; or a free camera dict(distance, azimuth, elevation, lookat) — missing or None keys
    keep MuJoCo's defaults for the model.
    """
    if isinstance(camera, mujoco.MjvCamera):
        return camera
    cam = mujoco.MjvCamera()
    if camera is None:
        names = camera_names(model)
        camera = names[0] if names else "free"
    if isinstance(camera, Mapping):
        camera = {k: v for k, v in camera.items() if v is not None}  # unset optional fields
        unknown = set(camera) - set(_FREE_KEYS)
        if unknown:
            raise SceneError(f"free camera: unknown key(s) {sorted(unknown)}; accepted: {', '.join(_FREE_KEYS)}")
        mujoco.mjv_defaultFreeCamera(model, cam)
        try:
            for key in ("distance", "azimuth", "elevation"):
                if key in camera:
                    setattr(cam, key, float(camera[key]))
            if "lookat" in camera:
                lookat = np.asarray(camera["lookat"], dtype=float)
                if lookat.shape != (3,):
                    raise ValueError("lookat needs 3 numbers")
                cam.lookat[:] = lookat
        except (TypeError, ValueError) as e:
            raise SceneError(f"free camera: {e}") from None
        return cam
    if isinstance(camera, str):
        cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if cam_id < 0:
            if camera == "free":
                mujoco.mjv_defaultFreeCamera(model, cam)
                return cam
            raise SceneError(
                f"camera {camera!r} is not in the scene; cameras: {', '.join(camera_names(model)) or 'none'} "
                "(or 'free', or a dict with distance/azimuth/elevation/lookat)"
            )
    elif isinstance(camera, int) and not isinstance(camera, bool):
        cam_id = camera
        if not 0 <= cam_id < model.ncam:
            raise SceneError(f"camera id {cam_id} out of range: the scene has {model.ncam} camera(s)")
    else:
        raise SceneError(f"camera must be a name, an id or a free-camera dict, got {type(camera).__name__}")
    cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
    cam.fixedcamid = cam_id
    return cam


def perturbable_qpos(model: mujoco.MjModel) -> np.ndarray:
    """qpos indices that can take additive noise: hinge/slide values and free-joint positions
    (quaternions are left alone so they stay normalized)."""
    idx: list[int] = []
    for j in range(model.njnt):
        adr, typ = int(model.jnt_qposadr[j]), int(model.jnt_type[j])
        if typ == mujoco.mjtJoint.mjJNT_FREE:
            idx.extend(range(adr, adr + 3))
        elif typ in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE):
            idx.append(adr)
    return np.asarray(idx, dtype=int)


def seed_world(model: mujoco.MjModel, d: mujoco.MjData, seed: int, perturb_scale: float,
               qpos_idx: np.ndarray | None = None) -> None:
    """mj_resetData, then seed-dependent noise (±perturb_scale) on joint positions and velocities,
    so that different seeds give visibly different episodes even under the zero policy. Every render
    engine seeds its worlds with this, so a seed means the same start state everywhere."""
    mujoco.mj_resetData(model, d)
    idx = perturbable_qpos(model) if qpos_idx is None else qpos_idx
    rng = np.random.default_rng(seed)
    s = perturb_scale
    if s > 0:
        if idx.size:
            d.qpos[idx] += rng.uniform(-s, s, idx.size)
        if model.nv:
            d.qvel[:] += rng.uniform(-s, s, model.nv)
    mujoco.mj_forward(model, d)


class EpisodeRunner:
    """Physics + offscreen rendering for one model, in the thread that creates it.

    Example (inside the simulator's worker thread)::

        runner = EpisodeRunner(model, width=640, height=480, fps=30, quality="full")
        try:
            for seed in seeds:
                policy = make_policy("random", model, seed=seed)
                summary = runner.run_episode(seed=seed, policy=policy, duration_s=5.0,
                                             on_frame=lambda f: queue.put(f.pixels.tobytes()))
        finally:
            runner.close()
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        *,
        width: int,
        height: int,
        fps: float,
        camera: CameraSpec = None,
        quality: Quality = "full",
        perturb_scale: float = 0.01,
        extra_cameras: Sequence[CameraSpec] = (),
        compose: str = "stack",
        state_fields: Sequence[str] = (),
        streams: Sequence[str] = ("rgb",),
    ) -> None:
        """`extra_cameras` render the same instant from more viewpoints into one composite frame:
        `compose="stack"` puts the views one above the other (the encoder splits them into one video
        per camera), `"tile"` side by side (one video showing all of them). `state_fields` (of MjData:
        qpos, qvel, sensordata) are copied into each FrameOut's `state`. `streams` beyond "rgb"
        ("depth", "segmentation") are rendered from the same scene update into FrameOut.planes."""
        if width <= 0 or height <= 0:
            raise ValueError(f"width and height must be > 0, got {width}x{height}")
        if quality not in ("full", "fast"):
            raise ValueError(f"quality must be 'full' or 'fast', got {quality!r}")
        self._thread = threading.get_ident()
        self.model = model
        self.width, self.height, self.quality = int(width), int(height), quality
        self.schedule = FrameSchedule.of(model.opt.timestep, fps)
        self.camera = make_camera(model, camera)
        self.cameras = [self.camera] + [make_camera(model, c) for c in extra_cameras]
        if compose not in ("stack", "tile"):
            raise ValueError(f"compose must be 'stack' or 'tile', got {compose!r}")
        self.compose = compose
        bad = [f for f in state_fields if f not in ("qpos", "qvel", "sensordata")]
        if bad:
            raise ValueError(f"state_fields must be qpos, qvel or sensordata, got {bad[0]!r}")
        self.state_fields = tuple(state_fields)
        self.perturb_scale = float(perturb_scale)
        self._renderer: mujoco.Renderer | None = make_renderer(model, self.width, self.height, quality)
        self.gl = gl_info()
        self.data = mujoco.MjData(model)
        n = len(self.cameras)
        shape = (self.height * n, self.width, 3) if compose == "stack" else (self.height, self.width * n, 3)
        self._pixels = np.zeros(shape, dtype=np.uint8)
        self._view = np.zeros((self.height, self.width, 3), dtype=np.uint8) if (n > 1 and compose == "tile") else None
        bad = [x for x in streams if x not in ("rgb", "depth", "segmentation")]
        if bad:
            raise ValueError(f"streams must be rgb, depth or segmentation, got {bad[0]!r}")
        self._planes = {x: np.zeros(shape[:2] + ((4,) if x == "segmentation" else ()),
                                    dtype=np.uint8 if x == "segmentation" else "<u2")
                        for x in streams if x != "rgb"}
        self._depth_m = np.zeros((self.height, self.width), np.float32) if "depth" in self._planes else None
        self._seg = np.zeros((self.height, self.width, 2), np.int32) if "segmentation" in self._planes else None
        self._qpos_idx = perturbable_qpos(model)
        self._action = np.zeros(model.nu)
        limited = np.asarray(model.actuator_ctrllimited, dtype=bool).reshape(-1)
        rng = np.asarray(model.actuator_ctrlrange, dtype=float).reshape(-1, 2)
        self._lo = np.where(limited, rng[:, 0], -np.inf)
        self._hi = np.where(limited, rng[:, 1], np.inf)
        _log.debug("runner_ready", width=width, height=height, fps=float(self.schedule.fps),
                   quality=quality, renderer=self.gl["renderer"])

    def _check_thread(self) -> None:
        if threading.get_ident() != self._thread:
            raise RuntimeError("EpisodeRunner must be used and closed in the thread that created it "
                               "(its GL context is bound to that thread)")

    def plan(self, duration_s: float | None = None, max_steps: int | None = None) -> tuple[int, int]:
        return self.schedule.plan(duration_s, max_steps)

    def reset(self, seed: int) -> None:
        seed_world(self.model, self.data, seed, self.perturb_scale, self._qpos_idx)

    def _act(self, policy: Policy) -> None:
        d = self.data
        try:
            a = policy(self.model, d, d.time)
        except PolicyError:
            raise
        except Exception as e:
            raise PolicyError(f"policy failed at t={d.time:.4f}s: {type(e).__name__}: {e}") from e
        a = np.asarray(a, dtype=float)
        if a.shape != self._action.shape:
            if a.size == self._action.size:
                a = a.reshape(self._action.shape)
            else:
                raise PolicyError(f"policy returned shape {a.shape}; the scene has {self.model.nu} actuator(s)")
        if not np.isfinite(a).all():
            raise PolicyError(f"policy returned NaN/inf at t={d.time:.4f}s")
        np.clip(a, self._lo, self._hi, out=self._action)
        d.ctrl[:] = self._action

    def _render_views(self, r, d, buf: np.ndarray) -> None:
        h, w = self.height, self.width
        for i, cam in enumerate(self.cameras):
            r.update_scene(d, camera=cam)
            if len(self.cameras) == 1:
                r.render(out=buf)
            elif self.compose == "stack":
                r.render(out=buf[i * h:(i + 1) * h])  # a contiguous block of rows
            else:
                r.render(out=self._view)
                buf[:, i * w:(i + 1) * w] = self._view
            if self._planes:
                self._render_planes(r, i)

    def _render_planes(self, r, i: int) -> None:
        """Depth and segmentation of view `i`, from the scene already updated for its RGB."""
        h, w = self.height, self.width
        where = (slice(i * h, (i + 1) * h), slice(None)) if self.compose == "stack" else (slice(None), slice(i * w, (i + 1) * w))
        try:
            if self._depth_m is not None:
                r.enable_depth_rendering()
                r.render(out=self._depth_m)
                streams.quantise_depth(self._depth_m, out=self._planes["depth"][where])
            if self._seg is not None:
                r.enable_segmentation_rendering()
                r.render(out=self._seg)
                streams.pack_segmentation(self._seg, out=self._planes["segmentation"][where])
        finally:
            r.disable_depth_rendering()
            r.disable_segmentation_rendering()

    def run_episode(
        self,
        *,
        seed: int,
        policy: Policy,
        duration_s: float | None = None,
        max_steps: int | None = None,
        on_frame: Callable[[FrameOut], None],
        should_stop: Callable[[], bool] = lambda: False,
    ) -> EpisodeSummary:
        """Reset with `seed`, run the policy, call `on_frame` for each frame (see FrameOut: the pixel
        buffer is reused), and return the episode's summary. `should_stop` is polled before each frame."""
        self._check_thread()
        if self._renderer is None:
            raise RuntimeError("EpisodeRunner is closed")
        n_frames, total_steps = self.schedule.plan(duration_s, max_steps)
        m, d, r, buf, sched = self.model, self.data, self._renderer, self._pixels, self.schedule
        dt = float(sched.dt)
        self.reset(seed)
        self._action[:] = 0.0
        stats = FrameStats(buf.shape[1], buf.shape[0])
        step, ret, since_frame, max_off = 0, 0.0, 0.0, 0.0
        render_s = physics_s = 0.0
        stopped = False

        def advance(target: int) -> None:
            nonlocal step, ret, since_frame, physics_s
            t0 = time.perf_counter()
            while step < target:
                self._act(policy)
                mujoco.mj_step(m, d)
                step += 1
                if m.nu:
                    r_step = -float(self._action @ self._action) * dt
                    ret += r_step
                    since_frame += r_step
            physics_s += time.perf_counter() - t0

        for k in range(n_frames):
            if should_stop():
                stopped = True
                break
            advance(sched.step_for(k))
            t0 = time.perf_counter()
            self._render_views(r, d, buf)
            render_s += time.perf_counter() - t0
            stats.update(buf)
            max_off = max(max_off, sched.offset(k))
            state = {f: getattr(d, f).tolist() for f in self.state_fields} if self.state_fields else None
            on_frame(FrameOut(k, sched.frame_time(k), step, buf, since_frame, self._action.tolist(), state,
                              self._planes or None))
            since_frame = 0.0
        if not stopped:
            advance(total_steps)
        warnings = {
            mujoco.mjtWarning(i).name: int(d.warning[i].number)
            for i in range(len(d.warning))
            if d.warning[i].number > 0
        }
        if warnings:
            _log.warning("physics_warnings", seed=seed, warnings=warnings)
        return EpisodeSummary(
            seed=seed,
            steps=step,
            frames=stats.frames,
            sim_time=float(step * sched.dt),
            return_=ret,
            render_ms_total=render_s * 1e3,
            physics_ms_total=physics_s * 1e3,
            blank=stats.black,
            frozen=stats.frozen,
            warnings=stats.warnings() if stats.frames else [],
            max_frame_time_offset=max_off,
            stopped=stopped,
            physics_warnings=warnings,
        )

    def close(self) -> None:
        """Free the renderer (and its GL context) — in the creating thread. Idempotent."""
        if self._renderer is not None:
            self._check_thread()
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> "EpisodeRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
