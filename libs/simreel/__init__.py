"""simreel: headless simulation-video pipeline (see README.md)."""
from . import lean_imports as _lean_imports

_lean_imports.load()
