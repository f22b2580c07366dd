"""Public path of simreel.contract.keep (the same module object, so every import sees one module)."""
import sys

from simreel.contract import keep as _module

sys.modules[__name__] = _module
