"""Logging for the library, the CLI and the services: structlog in front of the standard `logging`.

Every simreel logger is a structlog logger writing to a `logging.Logger` named `simreel.…`, with its
own processors (never the process's global structlog configuration). Inside someone else's process
(the drop-ins, a Client in a training script) that is all simreel does: nothing goes to stdout, no
handler is added to the root logger, and the application's `logging` configuration decides what is
shown and where. With no configuration at all, Python's last-resort handler prints warnings and errors
to stderr, and info lines are dropped.

simreel's own processes (the CLI, the services) call `setup()`, which gives the `simreel` logger one
stderr handler that renders JSON (service logs) or console lines, so `simreel run --json` keeps stdout
for its one JSON object.

Tracebacks are always logged without local variables: locals are where credentials live.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, Iterator

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from simreel.runtime import config

ROOT = "simreel"

_SECRET_KEYS = ("password", "secret", "token", "creds", "access_key", "secret_key", "authorization")

# What each record carries besides its rendered text, for handlers that want the fields themselves
# (`record.simreel_fields`, a dict).
FIELDS_ATTR = "simreel_fields"


def _redact(_logger, _name, event_dict):
    """Drop values of secret-looking keys: credentials must never reach a log line."""
    for key in list(event_dict):
        if any(s in key.lower() for s in _SECRET_KEYS):
            event_dict[key] = "***"
    return event_dict


class _Stderr:
    """Whatever sys.stderr is at write time (test runners and daemons swap it; a captured file
    object may be closed later)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _Renderer:
    """The last processor: the event as one line of text for the standard logger, plus its fields.

    How the line looks depends on whose process this is: `setup()` chooses JSON or console lines;
    without it (a library inside an application) the line is `event key=value …`, which any
    `logging.Formatter` can frame with its own time and level."""

    def __init__(self) -> None:
        self.mode: str | None = None  # None | "json" | "console"
        self._stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
        self._json_exc = structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        self._json = structlog.processors.JSONRenderer()
        self._console = structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
        self._plain = structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True)

    def configure(self, mode: str | None, *, colors: bool = False) -> None:
        self.mode = mode
        self._console = structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback)

    def __call__(self, logger, name, event_dict) -> tuple[tuple[Any, ...], dict[str, Any]]:
        fields = {k: v for k, v in event_dict.items() if k not in ("exc_info", "stack_info")}
        if self.mode == "json":
            text = self._json(logger, name, self._json_exc(logger, name, self._stamp(logger, name, event_dict)))
        elif self.mode == "console":
            text = self._console(logger, name, self._stamp(logger, name, event_dict))
        else:
            event_dict.pop("level", None)  # the application's formatter shows its own level
            text = self._plain(logger, name, structlog.processors.format_exc_info(logger, name, event_dict))
        return (text,), {"extra": {FIELDS_ATTR: fields}}


_renderer = _Renderer()
_PROCESSORS = [
    structlog.stdlib.filter_by_level,  # first: a line the application does not want costs nothing more
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    _redact,
    _renderer,
]
_handler: logging.Handler | None = None


def std_name(name: str | None) -> str:
    """The `logging` name of a simreel logger: always under `simreel` (services name theirs `encoder`,
    `uploader`, … for short)."""
    if not name:
        return ROOT
    return name if name == ROOT or name.startswith(ROOT + ".") else f"{ROOT}.{name}"


def setup(level: str | None = None, *, json: bool | None = None, service: str | None = None) -> None:
    """For simreel's own processes only (the CLI, a service): log lines to stderr at `level`
    (SIMREEL_LOG_LEVEL, default info), JSON when SIMREEL_LOG_FORMAT=json. A library never calls this."""
    global _handler
    level = (level or config.log_level()).upper()
    if json is None:
        json = config.log_json()
    _renderer.configure("json" if json else "console", colors=not json and sys.stderr.isatty())
    root = logging.getLogger(ROOT)
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(_Stderr())
    _handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(_handler)
    root.setLevel(getattr(logging, level, logging.INFO))
    root.propagate = False  # one line per event, whatever the root logger has
    if service:
        structlog.contextvars.bind_contextvars(service=service)


@contextlib.contextmanager
def as_library() -> Iterator[None]:
    """simreel's logging as a library finds it (no handler, level unset, propagating), for the duration;
    whatever `setup()` had configured is put back afterwards. For a process that must show how the
    library behaves in someone else's program after it has itself called `setup()`: the test suite."""
    global _handler
    root = logging.getLogger(ROOT)
    before = (root.level, root.propagate, list(root.handlers), _renderer.mode, _handler)
    for h in before[2]:
        root.removeHandler(h)
    root.setLevel(logging.NOTSET)
    root.propagate = True
    _renderer.mode, _handler = None, None
    try:
        yield
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in before[2]:
            root.addHandler(h)
        root.setLevel(before[0])
        root.propagate = before[1]
        _renderer.mode, _handler = before[3], before[4]


def get(name: str | None = None, *, min_level: int = logging.NOTSET, **bind):
    """A structlog logger for `simreel.<name>`; `min_level` drops lines below it even when the
    `logging` configuration would let them through (the drop-ins' `disable_logger`)."""
    wrapper = structlog.make_filtering_bound_logger(min_level)
    return wrapper(logging.getLogger(std_name(name)), _PROCESSORS, dict(bind))


def quiet(name: str | None = None, **bind):
    """Warnings and errors only."""
    return get(name, min_level=logging.WARNING, **bind)
