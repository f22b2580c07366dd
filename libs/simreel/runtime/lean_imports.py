"""Import nats-py and structlog without the optional extras they load eagerly when installed.

Why: nats-py imports aiohttp at module level (only its WebSocket transport uses it) and structlog
imports rich (only to pretty-print tracebacks on a console). simreel installs both for its ui and CLI,
so every process that talks to NATS or logs paid for them: ~13 MB + ~9 MB of resident memory and
~0.4 s of start-up in a training loop that only records, and in the embedded encoder. simreel connects
over TCP and logs JSON in services; consoles get structlog's plain tracebacks instead of rich's.

A ws:// or wss:// server URL still works: `websockets()` gives nats-py its aiohttp back before
connecting. Code that imports aiohttp or rich itself gets them as usual: they are hidden only while
nats-py and structlog are imported, and only when not imported already.
"""
from __future__ import annotations

import importlib
import sys

_LEAN = (("nats.aio.transport", "aiohttp"), ("structlog", "rich"))


def load() -> None:
    for module, extra in _LEAN:
        root = module.split(".")[0]
        if root in sys.modules or extra in sys.modules:
            continue  # imported already, with whatever it found: nothing to change
        sys.modules[extra] = None  # type: ignore[assignment]  # `import extra` raises ImportError meanwhile
        try:
            importlib.import_module(module)
        finally:
            if extra in sys.modules and sys.modules[extra] is None:
                del sys.modules[extra]


def websockets() -> None:
    """Make nats-py's WebSocket transport usable (imports aiohttp if load() kept it out)."""
    transport = importlib.import_module("nats.aio.transport")
    if transport.aiohttp is None:
        transport.aiohttp = importlib.import_module("aiohttp")
