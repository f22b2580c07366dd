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


_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}


def parse_size(raw: str) -> int:
    """Bytes from `123`, `512MiB`, `2GiB`, `1.5G`, `800MB` (k/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024;
    a trailing B is optional)."""
    text = raw.strip().replace(" ", "")
    number = text.rstrip("BbIiKkMmGgTt")
    unit = text[len(number):].lower().removesuffix("b")
    if not number or unit not in _UNITS:
        raise ValueError(f"{raw!r} is not a size")
    return int(float(number) * _UNITS[unit])


def size(env: Mapping[str, str], name: str, default: int, error: type[Exception] = ValueError) -> int:
    return _converted(env, name, default, parse_size, "a size (bytes, or e.g. 512MiB, 2GiB)", error)


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
