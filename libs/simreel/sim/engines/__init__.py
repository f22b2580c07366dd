"""Render engines: one small interface for "simulate N worlds of a model and render them to frames".

Why an interface at all: OpenGL (`mujoco.Renderer` on EGL / OSMesa / GLFW) renders one world at a
time, while batch renderers (MuJoCo Warp, and whatever comes next) step and render thousands of
worlds per call. The simulator, the benchmark and the batched runs only need what is below, so a new
engine is a plug-in, not a fork:

    factory(model, *, width, height, cameras, worlds, quality, options) -> RenderEngine

Engines are found by name — the built-in `gl` and `mjwarp`, and any package that declares an entry
point in the group ``simreel.render_engines`` — or by an explicit ``module:factory`` path. An engine
that cannot start (missing package, no device, a broken plug-in) raises `EngineUnavailable` with the
reason, which callers print as "unavailable: why", never as a traceback.

Physics lives in the engine because a batch renderer keeps the worlds' state on its device: copying
every world to the host for each frame would cost more than rendering it.
"""
from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "GROUP",
    "BUILTIN",
    "EngineInfo",
    "EngineUnavailable",
    "EngineFactory",
    "RenderEngine",
    "WorldState",
    "find",
    "create",
    "names",
    "streams_of",
]

GROUP = "simreel.render_engines"
BUILTIN = {
    "gl": "simreel.sim.engines.gl:create",
    "mjwarp": "simreel.sim.engines.mjwarp:create",
}


class EngineUnavailable(RuntimeError):
    """The engine cannot run here; `reason` says why (and, where known, the remedy)."""

    def __init__(self, engine: str, reason: str) -> None:
        super().__init__(f"render engine {engine!r} unavailable: {reason}")
        self.engine = engine
        self.reason = reason


@dataclass(frozen=True)
class EngineInfo:
    """What renders: `engine` (gl / mjwarp / a plug-in's name), `device` (egl, osmesa, cpu, cuda:0 …),
    `renderer` (the GL renderer string or the device name). `warmup_s` is one-time start-up cost —
    GL context creation, or MuJoCo Warp's kernel compile — kept apart from render time."""

    engine: str
    device: str
    renderer: str
    software: bool = False
    warmup_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class WorldState(Protocol):
    """What a policy may read of one world: the MjData fields of the same names (a real MjData for
    the GL engine, host views of the device arrays for batch engines)."""

    time: float
    qpos: np.ndarray
    qvel: np.ndarray
    ctrl: np.ndarray


@runtime_checkable
class RenderEngine(Protocol):
    """N worlds of one model, stepped together and rendered into one uint8 batch.

    `frame_shape` is one world's frame, (height × views, width, 3): several cameras are stacked
    vertically, as the encoder expects. An engine is used from the thread that created it.
    """

    info: EngineInfo
    model: Any  # mujoco.MjModel on the host (policies, control ranges)
    worlds: int
    frame_shape: tuple[int, int, int]

    def reset(self, seeds: Sequence[int], perturb_scale: float = 0.01) -> None:
        """Every world back to the model's initial state, plus seeded noise on joints (one seed each)."""

    def states(self) -> Sequence[WorldState]:
        """The current state of each world (valid until the next step)."""

    def step(self, ctrl: np.ndarray) -> None:
        """One physics step of every world with `ctrl` of shape (worlds, nu)."""

    def render(self, out: np.ndarray) -> None:
        """Render every world's current state into `out`, shape (worlds, *frame_shape), uint8.

        An engine whose factory lists more `streams` than rgb also takes `planes={"depth": …,
        "segmentation": …}`: arrays of (worlds, height × views, width) in simreel.contract.streams' encodings,
        filled from the same state as `out`."""

    def close(self) -> None:
        """Free the device/GL resources. Idempotent."""


EngineFactory = Callable[..., RenderEngine]


def _load_target(label: str, target: str) -> EngineFactory:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise EngineUnavailable(label, f"{target!r} is not a 'module:factory' path")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except EngineUnavailable:
        raise
    except Exception as e:  # ImportError, AttributeError, or whatever a broken module raises on import
        raise EngineUnavailable(label, f"cannot load {target}: {type(e).__name__}: {e}") from None
    if not callable(obj):
        raise EngineUnavailable(label, f"{target} is a {type(obj).__name__}, not a factory")
    return obj


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUP)}


def names() -> list[str]:
    """Engines known by name: the built-ins, then installed plug-ins (entry points)."""
    return list(dict.fromkeys([*BUILTIN, *sorted(_entry_points())]))


def find(name: str) -> EngineFactory:
    """A factory by name (built-in or entry point) or by an explicit `module:factory` path."""
    if ":" in name:
        return _load_target(name, name)
    if name in BUILTIN:
        return _load_target(name, BUILTIN[name])
    eps = _entry_points()
    if name in eps:
        return _load_target(name, eps[name].value)
    raise EngineUnavailable(name, f"no such engine; known: {', '.join(names())} (or a 'module:factory' path)")


def streams_of(name: str) -> tuple[str, ...]:
    """The streams (simreel.contract.streams: rgb, depth, segmentation) an engine renders, from its factory's
    `streams` attribute; ("rgb",) for a factory that does not say. Loads the engine's module, not its
    device: asking costs no GPU and no kernel compile."""
    return tuple(getattr(find(name), "streams", ("rgb",)))


def create(
    name: str,
    model: Any,
    *,
    width: int,
    height: int,
    cameras: Sequence[Any] = (None,),
    worlds: int = 1,
    quality: str = "full",
    options: Mapping[str, Any] | None = None,
    streams: Sequence[str] = ("rgb",),
) -> RenderEngine:
    """Find and start an engine. Any failure to start — a factory that raises, a missing device —
    becomes `EngineUnavailable` with the reason; errors in the *scene* (SceneError) pass through.
    `streams` beyond rgb are passed to the factory (as `streams=`) only when asked for, and only to
    an engine whose factory lists them."""
    from simreel.sim.errors import SceneError

    factory = find(name)
    if worlds < 1:
        raise ValueError(f"worlds must be >= 1, got {worlds}")
    extra = {}
    if list(streams) != ["rgb"]:
        can = tuple(getattr(factory, "streams", ("rgb",)))
        missing = [x for x in streams if x not in can]
        if missing:
            raise EngineUnavailable(name, f"cannot render the {missing[0]!r} stream (it renders: {', '.join(can)})")
        extra["streams"] = tuple(streams)
    try:
        engine = factory(model, width=int(width), height=int(height), cameras=list(cameras) or [None],
                         worlds=int(worlds), quality=quality, options=dict(options or {}), **extra)
    except (EngineUnavailable, SceneError):
        raise
    except Exception as e:
        raise EngineUnavailable(name, f"{type(e).__name__}: {e}") from None
    missing = [a for a in ("info", "worlds", "frame_shape", "reset", "states", "step", "render", "close")
               if not hasattr(engine, a)]
    if missing:
        raise EngineUnavailable(name, f"the factory returned a {type(engine).__name__} without {', '.join(missing)}")
    return engine
