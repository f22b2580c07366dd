"""The OpenGL engine: `mujoco.Renderer` on whichever backend MUJOCO_GL names (EGL, OSMesa, GLFW).

It renders one world at a time, so N worlds are N MjData rendered in turn by one renderer — the same
setup as the simulator's EpisodeRunner (make_renderer / make_camera / quality), so the two give the
same pixels. The GL context belongs to the creating thread: create, use and close the engine there.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import mujoco
import numpy as np

from simreel.contract import streams
from simreel.sim.engines import EngineInfo
from simreel.sim.gl import gl_info
from simreel.sim.rollout import make_camera, make_renderer, seed_world

__all__ = ["GLEngine", "create"]


class GLEngine:
    def __init__(self, model: mujoco.MjModel, *, width: int, height: int, cameras: Sequence[Any],
                 worlds: int, quality: str) -> None:
        t0 = time.perf_counter()
        self.model = model
        self.worlds = worlds
        self.width, self.height = width, height
        self._cams = [make_camera(model, c) for c in cameras]
        self._renderer: mujoco.Renderer | None = make_renderer(model, width, height, quality)
        gl = gl_info()
        self.info = EngineInfo(engine="gl", device=gl["backend"], renderer=gl["renderer"],
                               software=gl["software"], warmup_s=time.perf_counter() - t0,
                               details={"vendor": gl["vendor"], "version": gl["version"]})
        self.frame_shape = (height * len(self._cams), width, 3)
        self._data = [mujoco.MjData(model) for _ in range(worlds)]

    def reset(self, seeds: Sequence[int], perturb_scale: float = 0.01) -> None:
        if len(seeds) != self.worlds:
            raise ValueError(f"{len(seeds)} seeds for {self.worlds} worlds")
        for d, seed in zip(self._data, seeds):
            seed_world(self.model, d, int(seed), perturb_scale)

    def states(self) -> Sequence[mujoco.MjData]:
        return self._data

    def step(self, ctrl: np.ndarray) -> None:
        for i, d in enumerate(self._data):
            if self.model.nu:
                d.ctrl[:] = ctrl[i]
            mujoco.mj_step(self.model, d)

    def render(self, out: np.ndarray, planes: Mapping[str, np.ndarray] | None = None) -> None:
        """`planes`: depth (worlds, H × views, W) uint16 and/or segmentation (…, 4) uint8 to fill too
        (simreel.contract.streams encodings), from the same scene update as the RGB."""
        r, h = self._renderer, self.height
        if r is None:
            raise RuntimeError("engine is closed")
        planes = planes or {}
        for i, d in enumerate(self._data):
            for v, cam in enumerate(self._cams):
                r.update_scene(d, camera=cam)
                r.render(out=out[i, v * h:(v + 1) * h])
                try:
                    if "depth" in planes:
                        r.enable_depth_rendering()
                        streams.quantise_depth(r.render(), out=planes["depth"][i, v * h:(v + 1) * h])
                    if "segmentation" in planes:
                        r.enable_segmentation_rendering()
                        streams.pack_segmentation(r.render(), out=planes["segmentation"][i, v * h:(v + 1) * h])
                finally:
                    r.disable_depth_rendering()
                    r.disable_segmentation_rendering()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def create(model: mujoco.MjModel, *, width: int, height: int, cameras: Sequence[Any] = (None,), worlds: int = 1,
           quality: str = "full", options: Mapping[str, Any] | None = None,
           streams: Sequence[str] = ("rgb",)) -> GLEngine:
    """The GL engine factory. No options: the backend is MUJOCO_GL's (see simreel.sim.gl). Every
    stream is rendered on demand (render's `planes`), so `streams` needs no set-up."""
    if options:
        raise ValueError(f"the gl engine takes no options, got {sorted(options)}")
    return GLEngine(model, width=width, height=height, cameras=cameras, worlds=worlds, quality=quality)


create.streams = ("rgb", "depth", "segmentation")  # type: ignore[attr-defined]
