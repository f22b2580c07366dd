"""simreel: headless simulation-video pipeline (see README.md)."""
from simreel.runtime import lean_imports as _lean_imports

_lean_imports.load()
