"""Reading SIMREEL_* variables: the one place that turns environment text into values.

Every error names the variable and the value, so a service that stops at start says what to fix.
Callers choose the error type (settings raise ValueError, the store StoreConfigError).
"""
from __future__ import annotations

from typing import Mapping

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def text(env: Mapping[str, str], name: str) -> str | None:
    """The value, stripped; None when unset or blank."""
    value = env.get(name)
    if value is None:
        return None
    return value.strip() or None


def _converted(env: Mapping[str, str], name: str, default, convert, what: str, error: type[Exception]):
    raw = text(env, name)
    if raw is None:
        return default
    try:
        return convert(raw)
    except ValueError:
        raise error(f"{name}={raw!r} is not {what}") from None


def integer(env: Mapping[str, str], name: str, default: int, error: type[Exception] = ValueError) -> int:
    return _converted(env, name, default, int, "an integer", error)


def number(env: Mapping[str, str], name: str, default: float, error: type[Exception] = ValueError) -> float:
    return _converted(env, name, default, float, "a number", error)


def boolean(env: Mapping[str, str], name: str, error: type[Exception] = ValueError) -> bool | None:
    """True/False from 1/0, true/false, yes/no, on/off; None when unset."""
    raw = text(env, name)
    if raw is None:
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise error(f"{name}={raw!r} is not a boolean (use 0/1/true/false)")
