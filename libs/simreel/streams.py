"""Public path of simreel.contract.streams (the same module object, so every import sees one module)."""
import sys

from simreel.contract import streams as _module

sys.modules[__name__] = _module
