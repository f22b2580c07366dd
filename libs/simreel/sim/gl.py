"""Pick the headless OpenGL backend, and report which GL implementation actually renders.

MuJoCo reads MUJOCO_GL once, when `mujoco` is first imported, so `choose_backend()` must run before
that import. A backend that is missing can crash the process that tries it (a failing EGL/OSMesa
library load is not always a clean Python exception), so candidates are probed in a subprocess.
"""
from __future__ import annotations

import ctypes.util
import importlib
import os
import subprocess
import sys
from collections.abc import Mapping, MutableMapping

from simreel.runtime import log
from simreel.sim.errors import BackendError

__all__ = ["choose_backend", "probe_backend", "precheck", "gl_info", "BackendError", "PROBE_ORDER", "REMEDY"]

_log = log.get(__name__)

PROBE_ORDER = ("egl", "osmesa")
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "software rasterizer")
REMEDY = (
    "install a headless GL: `apt-get install libegl1 libgl1-mesa-dri` (EGL) or "
    "`apt-get install libosmesa6` (OSMesa), or set MUJOCO_GL=egl|osmesa|glfw explicitly"
)

_PROBE = (
    "import mujoco\n"
    "c = mujoco.GLContext(8, 8)\n"
    "c.make_current()\n"
    "c.free()\n"
)


def precheck(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Cheap reasons a backend cannot work, found without loading it (its failures are cryptic:
    a missing libOSMesa shows up as "'NoneType' object has no attribute 'glGetError'")."""
    environ = os.environ if environ is None else environ
    name = name.lower()
    if name == "osmesa" and not ctypes.util.find_library("OSMesa"):
        return "libOSMesa not found (apt-get install libosmesa6)"
    if name == "egl" and not ctypes.util.find_library("EGL"):
        return "libEGL not found (apt-get install libegl1 libgl1-mesa-dri)"
    if name in ("glfw", "glx") and not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
        return f"{name} needs a display: DISPLAY is not set (headless: use egl or osmesa, or run under Xvfb)"
    return None


def probe_backend(name: str, *, timeout: float = 60.0, environ: MutableMapping[str, str] | None = None) -> str | None:
    """Try to create a GL context with MUJOCO_GL=name in a child process; None if it works, else why."""
    env = {**os.environ, **(environ or {})}
    why = precheck(name, env)
    if why:
        return why
    env["MUJOCO_GL"] = name
    env.pop("PYOPENGL_PLATFORM", None)  # mujoco's egl/osmesa modules set the matching one
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return f"probe timed out after {timeout:.0f}s"
    if proc.returncode == 0:
        return None
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"probe exited with code {proc.returncode}"


def choose_backend(environ: MutableMapping[str, str] = os.environ) -> str:
    """Return the backend to use, setting environ["MUJOCO_GL"] when it was unset.

    An explicit MUJOCO_GL is kept untouched (the operator knows best, e.g. glfw on a desktop).
    """
    explicit = environ.get("MUJOCO_GL", "").strip()
    if explicit:
        return explicit.lower()
    reasons = {}
    for name in PROBE_ORDER:
        why = probe_backend(name, environ=environ)
        if why is None:
            environ["MUJOCO_GL"] = name
            if environ is os.environ:
                _rebind_if_imported(name)
            _log.info("gl_backend_chosen", backend=name, skipped=reasons or None)
            return name
        reasons[name] = why
    detail = "; ".join(f"{k}: {v}" for k, v in reasons.items())
    raise BackendError(f"no headless OpenGL backend works ({detail}); {REMEDY}")


_CONTEXT_MODULES = {"egl": "mujoco.egl", "osmesa": "mujoco.osmesa", "glfw": "mujoco.glfw"}


def _rebind_if_imported(name: str) -> None:
    """If `mujoco` was imported before MUJOCO_GL was set, it bound the glfw GLContext. The renderer
    looks the class up on mujoco's gl_context module each time, so swap it there — unless PyOpenGL
    is already loaded for another platform, which cannot be undone in this process."""
    gl_context = sys.modules.get("mujoco.rendering.classic.gl_context")
    target = _CONTEXT_MODULES.get(name)
    if gl_context is None or target is None:
        return
    current = getattr(gl_context, "GLContext", None)
    if current is not None and current.__module__ == target:
        return
    if "OpenGL" in sys.modules:
        _log.warning("gl_backend_not_switched", wanted=name,
                     hint="mujoco/PyOpenGL were imported before choose_backend(); call it first")
        return
    cls = importlib.import_module(target).GLContext
    gl_context.GLContext = cls
    sys.modules["mujoco"].GLContext = cls
    _log.info("gl_backend_rebound", backend=name)


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def gl_info() -> dict:
    """Vendor/renderer/version of the GL context current in *this thread* (create a
    mujoco.Renderer first). `software` flags CPU rasterizers (llvmpipe et al.) — the usual sign that
    a GPU is not being used."""
    from OpenGL import GL  # after mujoco picked the platform (PYOPENGL_PLATFORM)

    try:
        vendor = _text(GL.glGetString(GL.GL_VENDOR))
        renderer = _text(GL.glGetString(GL.GL_RENDERER))
        version = _text(GL.glGetString(GL.GL_VERSION))
    except Exception:  # PyOpenGL raises GLError (or worse) without a current context
        renderer = ""
    if not renderer:
        raise BackendError("no current GL context in this thread: create the mujoco.Renderer first")
    return {
        "backend": os.environ.get("MUJOCO_GL", ""),
        "vendor": vendor,
        "renderer": renderer,
        "version": version,
        "software": any(s in renderer.lower() for s in SOFTWARE_RENDERERS),
    }
