"""Errors of the simulation kernel.

Kept free of `import mujoco` so that `simreel.sim.gl.choose_backend()` can run (and these errors can be
raised) before MuJoCo's GL backend is fixed at import time.
"""
from __future__ import annotations


class SceneError(ValueError):
    """A scene cannot be loaded; the message is meant for the person who wrote the request."""


class SceneForbidden(SceneError):
    """The request asks for something it may not have (a file outside the allowed roots, a module
    import): refused by policy, not malformed. Callers tell the two apart by type, not by wording."""


class PolicyError(ValueError):
    """A policy cannot be built or failed while running; the message names the policy."""


class BackendError(RuntimeError):
    """No OpenGL backend can create a context; the message names the remedy."""
