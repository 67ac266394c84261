"""Typed ``key=value`` options, as given on the command line or by UI widgets."""

from __future__ import annotations

from typing import Any

from fairaudit.errors import FairauditError


def coerce_like(value: Any, default: Any, what: str) -> Any:
    """Convert a string ``value`` to the type of ``default``; ``what`` names the option in errors."""
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    try:
        if isinstance(default, bool):
            lowered = value.strip().lower()
            if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError
            return lowered in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise FairauditError(f"{what} expects a {type(default).__name__}, got {value!r}.") from None
    return value
