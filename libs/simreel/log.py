"""structlog setup shared by the CLI and every service.

Logs go to stderr so `simreel run --json` can keep stdout for its one JSON object.
"""
from __future__ import annotations

import logging
import os
import sys

import structlog

_SECRET_KEYS = ("password", "secret", "token", "creds", "access_key", "secret_key", "authorization")


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


def setup(level: str | None = None, *, json: bool | None = None, service: str | None = None) -> None:
    level = (level or os.environ.get("SIMREEL_LOG_LEVEL", "info")).upper()
    if json is None:
        json = os.environ.get("SIMREEL_LOG_FORMAT", "console") == "json"
    renderer = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.dict_tracebacks if json else structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),
        cache_logger_on_first_use=False,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)


def get(name: str | None = None, **bind):
    log = structlog.get_logger(name) if name else structlog.get_logger()
    return log.bind(**bind) if bind else log
