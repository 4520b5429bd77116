"""Arrays and objects: a reader's items, properties and their limits against a writer's.

Each check records a break on the ``Comparison`` and recurses into it for
each item and property both sides describe. Tuple items (``prefixItems``)
are proven only when unchanged. As in Confluent's registry, an *open*
writer (no ``additionalProperties: false``, or ``patternProperties``) may
already carry any property under any name, so a property the reader adds
must accept any value; a reader's ``patternProperties`` is proven only when
the writer's undeclared properties did not change.
"""

from __future__ import annotations

from typing import Any

from router.evolution.bounds import check_sizes, narrower
from router.evolution.report import Comparison, Spot
from router.evolution.subschema import strip

__all__ = ["check_array", "check_object"]


def check_array(c: Comparison, w: dict[str, Any], r: dict[str, Any], spot: Spot) -> None:
    """Sizes, ``uniqueItems``, and every item the writer allows against the reader's."""
    check_sizes(c, w, r, spot, "Items")
    if r.get("uniqueItems") is True and w.get("uniqueItems") is not True:
        narrower(c, spot, "uniqueItems", True, w.get("uniqueItems"))
    tuples = "prefixItems" in r or isinstance(r.get("items"), list) \
        or isinstance(w.get("items"), list)
    if tuples:
        if (r.get("prefixItems"), r.get("items")) != (w.get("prefixItems"), w.get("items")):
            c.miss(spot, f"{spot.what}: cannot prove tuple items (prefixItems) "
                         "compatible (the check is conservative)")
        return
    for item in [*w.get("prefixItems", ()), w.get("items", True)]:
        c.sub(item, r.get("items", True), spot.below("*"))


def check_object(c: Comparison, w: dict[str, Any], r: dict[str, Any], spot: Spot) -> None:
    """Sizes, ``required`` names, each property the reader declares, then the rest."""
    check_sizes(c, w, r, spot, "Properties")
    present = set(w.get("required", ()))
    hint = " (make it optional or add a default upcaster)" if c.new_is_reader else ""
    listed = Spot(spot.at, c.lines.get(id(r.get("required")), spot.line)
                  if c.new_is_reader else spot.line)
    for name in r.get("required", ()):
        if name not in present:
            inner = listed.below(name)
            c.miss(inner, f"{inner.what} is required in {c.reader} but "
                          f"{c.writer} messages may lack it{hint}")
    w_props: dict[str, Any] = w.get("properties", {})
    r_props: dict[str, Any] = r.get("properties", {})
    # a name matching a writer's patternProperties may hold anything we do not follow
    w_extra = True if "patternProperties" in w else w.get("additionalProperties", True)
    for name, wanted in r_props.items():
        inner = spot.below(name)
        if name in w_props:
            c.sub(w_props[name], wanted, inner)
        elif found := c.trial(w_extra, wanted, inner):
            why = (f"is new in {c.reader}, but {c.writer} messages may already "
                   f"carry it with any value (close {c.writer} with "
                   "additionalProperties: false, or drop the field in an upcaster)"
                   if c.new_is_reader else
                   f"is declared in {c.reader} but not in {c.writer}, whose "
                   f"messages may carry it with any value (keep declaring it, or close "
                   f"{c.writer} with additionalProperties: false)")
            c.miss(Spot(inner.at, found[0].line), f"{inner.what} {why}")
    _check_extra(c, w, r, spot)


def _check_extra(c: Comparison, w: dict[str, Any], r: dict[str, Any], spot: Spot) -> None:
    """The reader's ``additionalProperties`` against the writer's undeclared names."""
    r_extra = r.get("additionalProperties", True)
    if strip(r_extra) is True:
        return
    w_props: dict[str, Any] = w.get("properties", {})
    r_props: dict[str, Any] = r.get("properties", {})
    if "patternProperties" in r:
        if w.get("additionalProperties", True) != r_extra or w_props.keys() - r_props:
            c.miss(spot, f"{spot.what}: cannot prove {c.writer}'s properties fit "
                         f"{c.reader}'s patternProperties (the check is "
                         "conservative)")
        return
    for name, held in w_props.items():
        if name not in r_props:
            c.sub(held, r_extra, spot.below(name))
    w_extra = True if "patternProperties" in w else w.get("additionalProperties", True)
    if strip(w_extra) is not False and c.trial(w_extra, r_extra, spot):
        c.miss(spot, f"{spot.what}: {c.writer} messages may carry properties "
                     f"{c.reader} does not declare, and {c.reader} does not "
                     "allow them (additionalProperties)")
