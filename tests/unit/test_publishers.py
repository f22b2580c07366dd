"""Who publishes in services/: the bus's handler loop and the timers' runner (simreel.transport), which
publish what handlers and ticks return or yield, and the documented publishers below. Nothing else in
services/ reaches the bus's publishing methods, so every event a service emits is one a handler or a
tick produced (and that a "given/then" test can see). docs/architecture.md states the rule.
"""
from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
PUBLISHING = {"publish", "publish_all", "publish_frame_data"}

# (file under services/, expression that reaches a publishing method) → why it may.
DOCUMENTED = {
    ("ui/service.py", "bus.publish"): "the ui's wiring hands the bus's publish to the app",
    ("ui/app.py", "self.publish"): "the ui publishes what users ask for (SimRequested, DeleteRequested, "
                                   "capture controls, keep rules) through the `publish` callable it is given",
}


def publishing_uses(source: str) -> list[tuple[int, str]]:
    """Each `<expr>.publish…` in the source (a call, or the method handed on), with its line."""
    return sorted((node.lineno, ast.unparse(node)) for node in ast.walk(ast.parse(source))
                  if isinstance(node, ast.Attribute) and node.attr in PUBLISHING)


def uses_in_services() -> dict[tuple[str, str], list[int]]:
    found: dict[tuple[str, str], list[int]] = {}
    for path in sorted(SERVICES.rglob("*.py")):
        for line, expr in publishing_uses(path.read_text(encoding="utf-8")):
            found.setdefault((path.relative_to(SERVICES).as_posix(), expr), []).append(line)
    return found


def test_services_publish_only_through_the_handler_loop_and_documented_publishers():
    undocumented = {f"services/{path}:{lines}: {expr}" for (path, expr), lines in uses_in_services().items()
                    if (path, expr) not in DOCUMENTED}
    assert not undocumented, ("publishing outside the handler loop: return or yield the events from a handler "
                              "or a timer's tick (simreel.transport.periodic) instead", sorted(undocumented))


def test_every_documented_publisher_still_exists():
    """The list stays true: a publisher that went away leaves it."""
    assert set(DOCUMENTED) <= set(uses_in_services())


def test_the_scan_sees_calls_and_handed_on_methods():
    source = ("async def sweep(bus, events):\n"
              "    await bus.publish(events[0])\n"
              "    await self.bus.publish_all(events)\n"
              "    later = bus.publish\n")
    assert publishing_uses(source) == [(2, "bus.publish"), (3, "self.bus.publish_all"), (4, "bus.publish")]
