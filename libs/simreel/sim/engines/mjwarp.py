"""MuJoCo Warp engine: batched physics and ray-traced rendering of N worlds on a Warp device.

Install with `pip install 'simreel[warp]'` (mujoco-warp + warp-lang from PyPI). Runs on `cpu` or
`cuda` (default: cuda when Warp sees a GPU). Choices that are not obvious:

* Kernels are compiled on first use (tens of seconds on a CPU) and cached under ~/.cache/warp, so
  creating the engine runs one physics step and one render to compile them, and reports that time
  as `info.warmup_s` (split in `info.details`) — never as render time.
* `render.quality` maps to what the ray tracer offers: "full" = shadows + textures (+ the skybox when
  the scene has one), "fast" = neither.
* Deterministic mode (stable contact order, canonical constraint rows, invariant atomics) is on by
  default on CUDA, where threads race: a seed gives the same video twice. On the CPU device Warp runs
  a kernel's threads one after another, so results repeat without it, and the mode would only halve
  the physics speed; `options={"deterministic": True/False}` overrides either default.
* Frames are read from the renderer's packed 0xAARRGGBB buffer with one device→host copy per
  batch and a byte shuffle on the host, instead of Warp's float RGB unpack (4× the bytes).
* On CUDA, one physics step and one render are each captured as a CUDA graph (Warp's recommended
  way to avoid per-kernel launch cost); the CPU device launches directly.
* Free cameras become world cameras (see cameras.py): MuJoCo Warp renders model cameras only.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import mujoco
import numpy as np

from simreel.runtime import config, log
from simreel.contract import streams as stream_planes
from simreel.sim.engines import EngineInfo, EngineUnavailable
from simreel.sim.engines.cameras import fixed_cameras
from simreel.sim.rollout import perturbable_qpos

__all__ = ["MjWarpEngine", "WorldView", "create", "OPTIONS"]

_log = log.get(__name__)

OPTIONS = ("device", "deterministic", "graphs")
REMEDY = "pip install 'simreel[warp]' (mujoco-warp and warp-lang)"


def _import():
    try:
        import warp as wp

        # Warp prints its banner and every module load on stdout, which carries our JSON.
        wp.config.quiet = True
        wp.config.log_level = wp.LOG_ERROR
        import mujoco_warp as mjw
    except Exception as e:  # ImportError, or a warp-lang whose native library does not load
        raise EngineUnavailable("mjwarp", f"{type(e).__name__}: {e} ({REMEDY})") from None
    wp.init()
    return wp, mjw


class _Snapshot:
    """The batch's state fields, copied to the host on first use after each step: policies that
    read nothing (zero, random, sine) cost no device→host copy but the clock."""

    def __init__(self, d) -> None:
        self._d, self._host = d, {}

    def get(self, name: str) -> np.ndarray:
        a = self._host.get(name)
        if a is None:
            a = self._host[name] = getattr(self._d, name).numpy()
        return a


class WorldView:
    """One world's state for a policy: the MjData fields it may read, as host arrays."""

    __slots__ = ("_snap", "_i")

    def __init__(self, snap: _Snapshot, i: int) -> None:
        self._snap, self._i = snap, i

    @property
    def time(self) -> float:
        return float(self._snap.get("time")[self._i])

    def __getattr__(self, name: str):
        if name in ("qpos", "qvel", "ctrl", "act", "sensordata", "qacc", "xpos", "xquat"):
            return self._snap.get(name)[self._i]
        raise AttributeError(f"{name!r}: a MuJoCo Warp world offers time, qpos, qvel, ctrl, act, sensordata, "
                             "qacc, xpos, xquat")


class MjWarpEngine:
    def __init__(self, model: mujoco.MjModel, *, width: int, height: int, cameras: Sequence[Any], worlds: int,
                 quality: str, device: str | None = None, deterministic: bool | None = None,
                 graphs: bool = True, streams: Sequence[str] = ("rgb",)) -> None:
        if quality not in ("full", "fast"):
            raise ValueError(f"quality must be 'full' or 'fast', got {quality!r}")
        wp, mjw = _import()
        self._wp, self._mjw = wp, mjw
        name = device or config.mjwarp_device() or ("cuda" if wp.is_cuda_available() else "cpu")
        try:
            self._device = wp.get_device(name)
        except Exception as e:
            raise EngineUnavailable("mjwarp", f"device {name!r}: {e}") from None
        if deterministic is None:
            deterministic = bool(self._device.is_cuda)
        model, cam_ids = fixed_cameras(model, cameras)
        self.model = model
        self.worlds, self.width, self.height = worlds, width, height
        self.frame_shape = (height * len(cam_ids), width, 3)
        self._views = len(cam_ids)
        self._qpos_idx = perturbable_qpos(model)
        full = quality == "full"
        has_skybox = any(int(t) == mujoco.mjtTexture.mjTEXTURE_SKYBOX for t in model.tex_type)
        t0 = time.perf_counter()
        with wp.ScopedDevice(self._device):
            try:
                self._m = mjw.put_model(model)
            except (NotImplementedError, ValueError) as e:
                from simreel.sim.errors import SceneError

                raise SceneError(f"MuJoCo Warp cannot simulate this scene: {e}") from None
            if deterministic:
                self._m.opt.deterministic = int(mjw.DeterminismType.ALL)
            self._d = mjw.make_data(model, nworld=worlds)
            self._rc = mjw.create_render_context(
                model, nworld=worlds, cam_res=(width, height), cam_active=cam_ids,
                render_rgb=True, render_depth="depth" in streams, render_seg="segmentation" in streams,
                use_textures=full, use_shadows=full, render_skybox=full and has_skybox,
                deterministic=deterministic,
            )
            t1 = time.perf_counter()
            mjw.step(self._m, self._d)  # compiles the physics kernels (or loads them from the cache)
            wp.synchronize_device(self._device)
            t2 = time.perf_counter()
            self._render_now()  # compiles the renderer
            wp.synchronize_device(self._device)
            t3 = time.perf_counter()
        self._rgb_adr = [int(a) for a in self._rc.rgb_adr.numpy()]
        self._depth_adr = [int(a) for a in self._rc.depth_adr.numpy()] if "depth" in streams else []
        self._seg_adr = [int(a) for a in self._rc.seg_adr.numpy()] if "segmentation" in streams else []
        self._step_graph = self._render_graph = None
        if graphs and self._device.is_cuda:
            self._capture()
        self.info = EngineInfo(
            engine="mjwarp", device=str(self._device), renderer=f"MuJoCo Warp ray tracer on {self._device.name}",
            software=not self._device.is_cuda, warmup_s=t3 - t0,
            details={"setup_s": round(t1 - t0, 3), "physics_compile_s": round(t2 - t1, 3),
                     "render_compile_s": round(t3 - t2, 3), "deterministic": bool(deterministic),
                     "shadows": full, "textures": full, "cuda_graphs": self._step_graph is not None,
                     "mujoco_warp": getattr(mjw, "__version__", "?"), "warp": getattr(wp, "__version__", "?")},
        )
        _log.info("mjwarp_ready", device=str(self._device), worlds=worlds, width=width, height=height,
                  warmup_s=round(self.info.warmup_s, 2))

    def _render_now(self) -> None:
        self._mjw.refit_bvh(self._m, self._d, self._rc)
        self._mjw.render(self._m, self._d, self._rc)

    def _capture(self) -> None:
        wp = self._wp
        try:
            with wp.ScopedDevice(self._device):
                with wp.ScopedCapture() as cap:
                    self._mjw.step(self._m, self._d)
                self._step_graph = cap.graph
                with wp.ScopedCapture() as cap:
                    self._render_now()
                self._render_graph = cap.graph
        except Exception as e:  # e.g. a driver without graph support: launch kernels directly
            _log.warning("mjwarp_graph_capture_failed", error=str(e))
            self._step_graph = self._render_graph = None

    def reset(self, seeds: Sequence[int], perturb_scale: float = 0.01) -> None:
        """Seed each world on the host exactly as the GL engine does (simreel.sim.rollout.seed_world),
        then upload qpos/qvel of all worlds at once."""
        from simreel.sim.rollout import seed_world

        if len(seeds) != self.worlds:
            raise ValueError(f"{len(seeds)} seeds for {self.worlds} worlds")
        m = self.model
        host = mujoco.MjData(m)
        qpos = np.empty((self.worlds, m.nq), dtype=np.float32)
        qvel = np.empty((self.worlds, m.nv), dtype=np.float32)
        for i, seed in enumerate(seeds):
            seed_world(m, host, int(seed), perturb_scale, self._qpos_idx)
            qpos[i], qvel[i] = host.qpos, host.qvel
        with self._wp.ScopedDevice(self._device):
            self._mjw.reset_data(self._m, self._d)
            self._d.qpos.assign(qpos)
            self._d.qvel.assign(qvel)
            self._mjw.forward(self._m, self._d)

    def states(self) -> Sequence[WorldView]:
        snap = _Snapshot(self._d)
        return [WorldView(snap, i) for i in range(self.worlds)]

    def step(self, ctrl: np.ndarray) -> None:
        wp = self._wp
        if self.model.nu:
            self._d.ctrl.assign(np.asarray(ctrl, dtype=np.float32).reshape(self.worlds, self.model.nu))
        if self._step_graph is not None:
            wp.capture_launch(self._step_graph)
        else:
            with wp.ScopedDevice(self._device):
                self._mjw.step(self._m, self._d)

    def render(self, out: np.ndarray, planes: Mapping[str, np.ndarray] | None = None) -> None:
        """`planes`: depth and segmentation of the same render, in simreel.contract.streams' encodings (the
        engine must have been created with those streams). The ray tracer's depth is planar, like
        GL's; a ray that hits nothing has depth 0 here, stored as 65535 like GL's far-plane background."""
        wp = self._wp
        if self._render_graph is not None:
            wp.capture_launch(self._render_graph)
        else:
            with wp.ScopedDevice(self._device):
                self._render_now()
        packed = self._rc.rgb_data.numpy()  # (worlds, pixels) uint32 0xAARRGGBB; one copy on CUDA
        n, h, w = self.worlds, self.height, self.width
        for v, adr in enumerate(self._rgb_adr):
            bgra = packed[:, adr:adr + h * w].view(np.uint8).reshape(n, h, w, 4)  # little endian: B G R A
            out[:, v * h:(v + 1) * h, :, 0] = bgra[..., 2]
            out[:, v * h:(v + 1) * h, :, 1] = bgra[..., 1]
            out[:, v * h:(v + 1) * h, :, 2] = bgra[..., 0]
        if planes:
            self._planes(planes)

    def _planes(self, planes: Mapping[str, np.ndarray]) -> None:
        n, h, w = self.worlds, self.height, self.width
        if "depth" in planes:
            if not self._depth_adr:
                raise RuntimeError("the engine was created without the depth stream")
            depth = self._rc.depth_data.numpy()  # (worlds, pixels) float32 metres
            for v, adr in enumerate(self._depth_adr):
                d = depth[:, adr:adr + h * w].reshape(n, h, w)
                q = stream_planes.quantise_depth(d)
                q[d <= 0] = stream_planes.DEPTH_MAX
                planes["depth"][:, v * h:(v + 1) * h] = q
        if "segmentation" in planes:
            if not self._seg_adr:
                raise RuntimeError("the engine was created without the segmentation stream")
            seg = self._rc.seg_data.numpy()  # (worlds, pixels, 2) int32: object id, type
            for v, adr in enumerate(self._seg_adr):
                stream_planes.pack_segmentation(seg[:, adr:adr + h * w].reshape(n, h, w, 2),
                                                out=planes["segmentation"][:, v * h:(v + 1) * h])

    def close(self) -> None:
        self._step_graph = self._render_graph = None
        self._rc = self._d = self._m = None


def create(model: mujoco.MjModel, *, width: int, height: int, cameras: Sequence[Any] = (None,), worlds: int = 1,
           quality: str = "full", options: Mapping[str, Any] | None = None,
           streams: Sequence[str] = ("rgb",)) -> MjWarpEngine:
    """The MuJoCo Warp engine factory. Options: device ("cpu", "cuda", "cuda:1"; default cuda if
    present, or $SIMREEL_MJWARP_DEVICE), deterministic (default: on for CUDA, where threads race),
    graphs (CUDA graphs, default true)."""
    options = dict(options or {})
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown mjwarp option(s) {sorted(unknown)}; accepted: {', '.join(OPTIONS)}")
    return MjWarpEngine(model, width=width, height=height, cameras=cameras, worlds=worlds, quality=quality,
                        device=options.get("device"),
                        deterministic=None if options.get("deterministic") is None else bool(options["deterministic"]),
                        graphs=bool(options.get("graphs", True)), streams=streams)


create.streams = ("rgb", "depth", "segmentation")  # type: ignore[attr-defined]
