"""Public path of simreel.contract.events (the same module object, so every import sees one module)."""
import sys

from simreel.contract import events as _module

sys.modules[__name__] = _module
