"""Handlers are typed against HandlerBus; the real Bus and the tests' MemoryBus both implement it,
with call signatures a handler can use on either."""
from __future__ import annotations

import inspect

import pytest

from simreel.transport.bus import Bus, HandlerBus
from tests.support.handlers import MemoryBus

MEMBERS = sorted(n for n in vars(HandlerBus) if not n.startswith("_"))


def _accepts(protocol_fn, impl_fn) -> list[str]:
    """What a call written against the protocol would pass that the implementation refuses."""
    want, have = inspect.signature(protocol_fn).parameters, inspect.signature(impl_fn).parameters
    problems = [f"no parameter {n}" for n in want if n not in have and not any(
        p.kind is p.VAR_KEYWORD for p in have.values())]
    problems += [f"{n} is required" for n, p in have.items()
                 if n not in want and p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    problems += [f"{n} is {have[n].kind.description}, not {p.kind.description}" for n, p in want.items()
                 if n in have and have[n].kind != p.kind]
    return problems


@pytest.mark.parametrize("impl", [Bus, MemoryBus])
def test_implements_the_handler_bus(impl):
    assert MEMBERS, "the protocol names what handlers use"
    broken = {}
    for name in MEMBERS:
        want, have = inspect.getattr_static(HandlerBus, name), inspect.getattr_static(impl, name, None)
        if isinstance(want, property):  # a property, or a plain attribute set in __init__ (MemoryBus)
            if have is None and not (impl is MemoryBus and name in vars(MemoryBus())):
                broken[name] = "missing"
            continue
        if have is None:
            broken[name] = "missing"
            continue
        if inspect.iscoroutinefunction(want) != inspect.iscoroutinefunction(have):
            broken[name] = "async in one, not in the other"
        if problems := _accepts(want, have):
            broken[name] = problems
    assert broken == {}


def test_the_check_finds_a_mismatch():
    class Narrow:
        async def last_event(self, subject: str) -> None: ...

    assert _accepts(HandlerBus.last_event, Narrow.last_event) == ["no parameter deadline_s"]


def test_nats_objects_are_used_only_in_the_transport_layer():
    """The NATS connection and JetStream context (`.nc`, `.js`) stay behind the bus's methods."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    transport = root / "libs" / "simreel" / "transport"
    used = re.compile(r"\w\.(nc|js)\b(?!\s*import)")
    found = [f"{p.relative_to(root)}:{n}" for p in [*(root / "libs").rglob("*.py"), *(root / "services").rglob("*.py")]
             if transport not in p.parents
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if used.search(line) and not line.lstrip().startswith(("#", "from ", "import "))]
    assert found == []
