"""Durations as configuration files write them: ``50ms``, ``2s``, ``1.5m``, ``2h``, ``1d``."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["parse_duration"]

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float | None:
    """Seconds from ``50ms``, ``2s``, ``1.5m``, ``2h``, ``1d`` or a number of seconds; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    return None
