"""Can a reader schema read everything a writer schema allows?  (pure, conservative)

``breaks(writer, reader)`` answers for two JSON Schemas with every reason why
not: each a ``Break`` naming the field (a JSON pointer into the message, ``*``
for any array item), why, and the line in the new version's file.  Backward
compatibility is ``breaks(old, new)``, forward is ``breaks(new, old)``
(Confluent Schema Registry's definitions).

The question is set inclusion: is every instance valid under the writer valid
under the reader?  The checker proves it keyword by keyword over schemas with
every ``$ref`` inlined (``router.evolution.inlined``): types (``integer`` is a ``number``),
``enum``/``const``, numeric and length bounds, ``multipleOf``, ``pattern`` and
``format`` (compared as written), objects (``properties``, ``required``,
``additionalProperties``), arrays (``items``, ``prefixItems``, sizes) and the
combinators.  A writer's finite values (``const``, ``enum``, an upcaster's
default) are validated against the reader exactly, with the router's own
validator options.  Whatever it cannot prove (a changed ``oneOf``, ``not``,
``if``, a recursive ``$ref``...) is reported as a break that says so: never
silently accepted.

As in Confluent's registry, an *open* object (no ``additionalProperties:
false``) may already carry any property under any name, so a writer that is
open cannot be proven to send a new reader property in the new shape.

This module walks the two schemas (types, ``enum``/``const`` and the
combinators); the keyword checks it calls live in ``router.evolution.bounds`` and
``router.evolution.containers``, the vocabulary in ``router.evolution.report`` and what a
subschema says in ``router.evolution.subschema``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from router.evolution.bounds import check_numbers, check_strings
from router.evolution.containers import check_array, check_object
from router.evolution.inlined import Schema
from router.evolution.report import Break, Spot, show
from router.evolution.subschema import (
    accepts,
    both,
    covered,
    disjoint,
    merge,
    relevant,
    strip,
    types_of,
)

__all__ = ["Break", "Versions", "accepts", "breaks"]

_HANDLED = frozenset({
    "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "minLength", "maxLength", "pattern", "format", "items", "prefixItems",
    "minItems", "maxItems", "uniqueItems", "properties", "required", "additionalProperties",
    "minProperties", "maxProperties", "allOf", "anyOf", "oneOf",
})
_NUMBERS = frozenset({"number", "integer"})


@dataclass
class _Compare:
    """One writer-against-reader walk; it records every break it finds in ``found``."""

    writer: str  # "v2"
    reader: str  # "v3"
    lines: Mapping[int, int]  # of the new version's nodes
    new_is_reader: bool
    found: list[Break] = field(default_factory=list)

    def miss(self, spot: Spot, why: str) -> None:
        """Record a break at ``spot``."""
        self.found.append(Break(spot.at, why, spot.line))

    def trial(self, w: Schema, r: Schema, spot: Spot) -> list[Break]:
        """The breaks of one comparison, without recording them."""
        attempt = _Compare(self.writer, self.reader, self.lines, self.new_is_reader)
        attempt.sub(w, r, spot)
        return attempt.found

    def sub(self, w: Schema, r: Schema, spot: Spot) -> None:
        """Record why some instance valid under ``w`` may be invalid under ``r``."""
        spot = Spot(spot.at, self.lines.get(id(r if self.new_is_reader else w), spot.line))
        w, r = strip(w), strip(r)
        if r is True or w is False or w == r:
            return
        if r is False:
            self.miss(spot, f"{spot.what} is not allowed in {self.reader} but "
                            f"{self.writer} messages may carry it")
            return
        w = {} if w is True else w
        if "const" in w or "enum" in w:
            self._finite(w, r, spot)
        elif not self._split(w, r, spot):
            self._keywords({k: v for k, v in w.items() if k != "$ref"}, r, spot)

    def _split(self, w: dict[str, Any], r: Schema, spot: Spot) -> bool:
        """Compare each alternative of a writer's anyOf/oneOf, or its merged allOf."""
        for key in ("anyOf", "oneOf"):
            if isinstance(w.get(key), list):
                rest = {k: v for k, v in w.items() if k != key}
                for branch in w[key]:
                    self.sub(both(rest, branch), r, spot)
                return True
        if isinstance(w.get("allOf"), list):
            merged = merge([{k: v for k, v in w.items() if k != "allOf"}, *w["allOf"]])
            if merged is None:
                self.miss(spot, f"{spot.what}: cannot prove that {self.reader} accepts what "
                                f"{self.writer}'s allOf allows (the check is conservative)")
            else:
                self.sub(merged, r, spot)
            return True
        return False

    def _keywords(self, w: dict[str, Any], r: dict[str, Any], spot: Spot) -> None:
        """A writer without combinators (a recursion ``$ref`` dropped: wider) against ``r``."""
        self._combinators(w, r, spot)
        for key, value in r.items():
            if key not in _HANDLED and w.get(key) != value:
                self.miss(spot, f"{spot.what}: cannot prove {key!r} of {self.reader} accepts "
                                f"{self.writer} messages ({key!r} differs; the check is "
                                "conservative)")
        kinds = self._type(w, r, spot)
        if "enum" in r or "const" in r:
            allowed = r["enum"] if "enum" in r else [r["const"]]
            self.miss(spot, f"{spot.what} is limited to {show(allowed)} in {self.reader} but "
                            f"{self.writer} messages may hold other values")
        if relevant(kinds, _NUMBERS):
            check_numbers(self, w, r, spot)
        if relevant(kinds, ("string",)):
            check_strings(self, w, r, spot)
        if relevant(kinds, ("array",)):
            check_array(self, w, r, spot)
        if relevant(kinds, ("object",)):
            check_object(self, w, r, spot)

    def _finite(self, w: dict[str, Any], r: Schema, spot: Spot) -> None:
        values = [w["const"]] if "const" in w else w["enum"]
        for value in values if isinstance(values, list) else []:
            verdict = accepts(r, value)
            if verdict is None:
                self.miss(spot, f"{spot.what}: cannot tell whether {self.reader} accepts "
                                f"{show(value)} (the check is conservative)")
            elif not verdict:
                self.miss(spot, f"{spot.what} may be {show(value)} in {self.writer} "
                                f"messages, which {self.reader} does not accept")

    def _combinators(self, w: dict[str, Any], r: dict[str, Any], spot: Spot) -> None:
        for part in r.get("allOf", []):
            self.sub(w, part, spot)
        for key in ("anyOf", "oneOf"):
            branches = r.get(key)
            if not isinstance(branches, list) or w.get(key) == branches:
                continue
            if key == "oneOf" and not disjoint(branches):
                self.miss(spot, f"{spot.what}: cannot prove that exactly one oneOf branch of "
                                f"{self.reader} accepts {self.writer} messages (the check "
                                "is conservative with oneOf)")
            elif all(self.trial(w, branch, spot) for branch in branches):
                self.miss(spot, f"{spot.what}: no {key} branch of {self.reader} accepts "
                                f"every {self.writer} value")

    def _type(self, w: dict[str, Any], r: dict[str, Any], spot: Spot) -> frozenset[str] | None:
        wanted, kinds = types_of(r), types_of(w)
        if wanted is None:
            return kinds
        must = " or ".join(sorted(wanted))
        if kinds is None:
            self.miss(spot, f"{spot.what} must be {must} in {self.reader} but may be of any "
                            f"type in {self.writer} messages")
            return None
        for kind in sorted(kinds):
            if not covered(kind, wanted):
                self.miss(spot, f"{spot.what} must be {must} in {self.reader} but may be "
                                f"{kind} in {self.writer} messages")
        return frozenset(k for k in kinds if covered(k, wanted))



@dataclass(frozen=True, slots=True)
class Versions:
    """The two versions compared: their labels ("v2"), which one is new, and where the new
    one's nodes are written (``lines``: line by ``id`` of each node)."""

    writer: str
    reader: str
    lines: Mapping[int, int]
    new_is_reader: bool


def breaks(writer: Schema, reader: Schema, versions: Versions) -> list[Break]:
    """Every reason a message valid under ``writer`` may be refused by ``reader``.

    ``versions.lines`` places each break in the new version's file (the reader's when
    ``new_is_reader``, else the writer's).
    """
    compare = _Compare(versions.writer, versions.reader, versions.lines, versions.new_is_reader)
    compare.sub(writer, reader, Spot("", None))
    unique: dict[tuple[str, str], Break] = {}
    for found in compare.found:
        unique.setdefault((found.field, found.why), found)
    return list(unique.values())

