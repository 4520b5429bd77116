"""Micro-benchmarks' shared pieces: the best time of a call, and the table printed.

``best_us`` is ``timeit``'s best of ``repeat`` runs of ``number`` calls, per call,
in µs (the least disturbed by other load on the machine).  ``print_rows`` prints
rows (dicts) as an aligned table under the headings given for their keys, the
first column to the left, then the rows once more as one JSON line.
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable
from typing import Any

__all__ = ["best_us", "print_rows"]


def best_us(call: Callable[[], Any], number: int, repeat: int = 5) -> float:
    """µs per call of ``call``, best of ``repeat`` runs of ``number`` calls."""
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def print_rows(rows: list[dict[str, Any]], headings: dict[str, str]) -> None:
    """The table (a column per key of ``headings``, as wide as its widest cell), then JSON."""
    widths = {key: max(len(title), *(len(str(r[key])) for r in rows))
              for key, title in headings.items()}
    first = next(iter(headings))

    def line(cells: dict[str, Any]) -> str:
        return "  ".join(f"{cells[k]!s:<{w}}" if k == first else f"{cells[k]!s:>{w}}"
                         for k, w in widths.items())

    print(line(headings))
    for r in rows:
        print(line(r))
    print(json.dumps(rows))
