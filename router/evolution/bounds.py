"""Bounds a reader may narrow: numeric ranges and steps, sizes, string patterns and formats.

Each check records a break on the ``Comparison`` when the reader's bound is
tighter than the writer's (or the writer has none): ``minimum``/``maximum``
and their exclusive forms compared as exact fractions, ``multipleOf``,
``min``/``max`` lengths, items and properties, and ``pattern``/``format``
(compared as written: two different regular expressions are not proven to
match the same strings).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from router.evolution.report import Comparison, Spot, show
from router.evolution.subschema import types_of

__all__ = ["check_numbers", "check_sizes", "check_strings", "narrower"]


def _fraction(value: Any) -> Fraction | None:
    """A JSON number, exactly (``0.1`` is one tenth); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return Fraction(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str
           ) -> tuple[Fraction, bool] | None:
    """The tighter of ``minimum``/``exclusiveMinimum`` (or maximum): (value, exclusive)."""
    bounds = [(n, False) for n in [_fraction(schema.get(inclusive))] if n is not None]
    bounds += [(n, True) for n in [_fraction(schema.get(exclusive))] if n is not None]
    if not bounds:
        return None
    lower = inclusive == "minimum"
    return (max if lower else min)(bounds, key=lambda b: (b[0], b[1] == lower))


def narrower(c: Comparison, spot: Spot, key: str, wanted: Any, had: Any) -> None:
    """Record that the reader's ``key`` (``wanted``) is narrower than the writer's."""
    was = "none" if had is None else show(had)
    c.miss(spot, f"{spot.what}: {key} {show(wanted)} in {c.reader} is narrower "
                 f"than in {c.writer} ({was})")


def check_numbers(c: Comparison, w: dict[str, Any], r: dict[str, Any], spot: Spot) -> None:
    """The reader's range and ``multipleOf`` must hold every number the writer allows."""
    for inclusive, exclusive, lower in (("minimum", "exclusiveMinimum", True),
                                        ("maximum", "exclusiveMaximum", False)):
        want = _bound(r, inclusive, exclusive)
        if want is None:
            continue
        have = _bound(w, inclusive, exclusive)
        ok = have is not None and (
            (have[0] > want[0] if lower else have[0] < want[0])
            or (have[0] == want[0] and (have[1] or not want[1])))
        if not ok:
            key = exclusive if want[1] else inclusive
            narrower(c, spot, key, r.get(key), w.get(inclusive, w.get(exclusive)))
    step = _fraction(r.get("multipleOf"))
    if step is not None:
        have_step = _fraction(w.get("multipleOf"))
        integers = types_of(w) == frozenset({"integer"})
        ok = (have_step is not None and (have_step / step).denominator == 1) or (
            integers and (1 / step).denominator == 1)
        if not ok:
            narrower(c, spot, "multipleOf", r["multipleOf"], w.get("multipleOf"))


def check_sizes(c: Comparison, w: dict[str, Any], r: dict[str, Any], spot: Spot,
                kind: str) -> None:
    """``min<kind>`` / ``max<kind>``: the reader's range must hold the writer's."""
    low, high = f"min{kind}", f"max{kind}"
    want, have = r.get(low), w.get(low)
    if isinstance(want, int) and want > 0 and not (isinstance(have, int) and have >= want):
        narrower(c, spot, low, want, have)
    want, have = r.get(high), w.get(high)
    if isinstance(want, int) and not (isinstance(have, int) and have <= want):
        narrower(c, spot, high, want, have)


def check_strings(c: Comparison, w: dict[str, Any], r: dict[str, Any], spot: Spot) -> None:
    """Lengths as sizes; ``pattern`` and ``format`` must be the writer's, as written."""
    check_sizes(c, w, r, spot, "Length")
    for key in ("pattern", "format"):
        if key in r and w.get(key) != r[key]:
            had = show(w[key]) if key in w else "none"
            c.miss(spot, f"{spot.what}: {key} {show(r[key])} in {c.reader} is not "
                         f"{c.writer}'s ({had}; compared as written)")
