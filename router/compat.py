"""Can a reader schema read everything a writer schema allows?  (pure, conservative)

``breaks(writer, reader)`` answers for two JSON Schemas with every reason why
not: each a ``Break`` naming the field (a JSON pointer into the message, ``*``
for any array item), why, and the line in the new version's file.  Backward
compatibility is ``breaks(old, new)``, forward is ``breaks(new, old)``
(Confluent Schema Registry's definitions).

The question is set inclusion: is every instance valid under the writer valid
under the reader?  The checker proves it keyword by keyword over schemas with
every ``$ref`` inlined (``router.inlined``): types (``integer`` is a ``number``),
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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

import jsonschema_rs

from router.inlined import Schema

__all__ = ["Break", "accepts", "breaks"]

_HANDLED = frozenset({
    "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "minLength", "maxLength", "pattern", "format", "items", "prefixItems",
    "minItems", "maxItems", "uniqueItems", "properties", "required", "additionalProperties",
    "minProperties", "maxProperties", "allOf", "anyOf", "oneOf",
})
_NUMBERS = frozenset({"number", "integer"})


# --- comparing ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Break:
    """One reason a reader cannot read what a writer allows."""

    field: str  # JSON pointer into the message ("" is the whole message)
    why: str
    line: int | None = None


def _refuse(uri: str) -> Any:
    raise ValueError(f"not followed: {uri}")


def accepts(schema: Schema, value: Any) -> bool | None:
    """Whether ``schema`` accepts ``value`` as the router validates; None: cannot tell."""
    try:
        validator = jsonschema_rs.validator_for(
            schema, retriever=_refuse, validate_formats=True, ignore_unknown_formats=False,
            pattern_options=jsonschema_rs.RegexOptions())
        return bool(validator.is_valid(value))
    except Exception:  # noqa: BLE001 -- a subschema that does not compile alone: cannot tell
        return None


def _types(schema: dict[str, Any]) -> frozenset[str] | None:
    raw = schema.get("type")
    if raw is None:
        return None
    return frozenset([raw] if isinstance(raw, str) else raw)


def _covered(kind: str, kinds: frozenset[str]) -> bool:
    return kind in kinds or (kind == "integer" and "number" in kinds)


def _relevant(kinds: frozenset[str] | None, wanted: Iterable[str]) -> bool:
    return kinds is None or any(_covered(k, kinds) or (k == "number" and "integer" in kinds)
                                for k in wanted)


def _number(value: Any) -> Fraction | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return Fraction(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str
           ) -> tuple[Fraction, bool] | None:
    """The tighter of ``minimum``/``exclusiveMinimum`` (or maximum): (value, exclusive)."""
    bounds = [(n, False) for n in [_number(schema.get(inclusive))] if n is not None]
    bounds += [(n, True) for n in [_number(schema.get(exclusive))] if n is not None]
    if not bounds:
        return None
    lower = inclusive == "minimum"
    return (max if lower else min)(bounds, key=lambda b: (b[0], b[1] == lower))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _strip(schema: Schema) -> Schema:
    """True for an empty schema; ``$ref`` left by recursion dropped from a writer."""
    if schema is True or schema == {}:
        return True
    return schema


@dataclass(frozen=True, slots=True)
class _Spot:
    """Where the comparison is: the field's JSON pointer and the line in the new file."""

    at: str
    line: int | None

    @property
    def what(self) -> str:
        return f"field {self.at}" if self.at else "the message"

    def below(self, name: str) -> _Spot:
        return _Spot(f"{self.at}/{name.replace('~', '~0').replace('/', '~1')}", self.line)


@dataclass
class _Compare:
    writer: str  # "v2"
    reader: str  # "v3"
    lines: Mapping[int, int]  # of the new version's nodes
    new_is_reader: bool
    found: list[Break] = field(default_factory=list)

    def miss(self, spot: _Spot, why: str) -> None:
        self.found.append(Break(spot.at, why, spot.line))

    def trial(self, w: Schema, r: Schema, spot: _Spot) -> list[Break]:
        """The breaks of one comparison, without recording them."""
        attempt = _Compare(self.writer, self.reader, self.lines, self.new_is_reader)
        attempt.sub(w, r, spot)
        return attempt.found

    def sub(self, w: Schema, r: Schema, spot: _Spot) -> None:
        """Record why some instance valid under ``w`` may be invalid under ``r``."""
        spot = _Spot(spot.at, self.lines.get(id(r if self.new_is_reader else w), spot.line))
        w, r = _strip(w), _strip(r)
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

    def _split(self, w: dict[str, Any], r: Schema, spot: _Spot) -> bool:
        """Compare each alternative of a writer's anyOf/oneOf, or its merged allOf."""
        for key in ("anyOf", "oneOf"):
            if isinstance(w.get(key), list):
                rest = {k: v for k, v in w.items() if k != key}
                for branch in w[key]:
                    self.sub(_both(rest, branch), r, spot)
                return True
        if isinstance(w.get("allOf"), list):
            merged = _merge([{k: v for k, v in w.items() if k != "allOf"}, *w["allOf"]])
            if merged is None:
                self.miss(spot, f"{spot.what}: cannot prove that {self.reader} accepts what "
                                f"{self.writer}'s allOf allows (the check is conservative)")
            else:
                self.sub(merged, r, spot)
            return True
        return False

    def _keywords(self, w: dict[str, Any], r: dict[str, Any], spot: _Spot) -> None:
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
            self.miss(spot, f"{spot.what} is limited to {_show(allowed)} in {self.reader} but "
                            f"{self.writer} messages may hold other values")
        if _relevant(kinds, _NUMBERS):
            self._numbers(w, r, spot)
        if _relevant(kinds, ("string",)):
            self._strings(w, r, spot)
        if _relevant(kinds, ("array",)):
            self._array(w, r, spot)
        if _relevant(kinds, ("object",)):
            self._object(w, r, spot)

    def _finite(self, w: dict[str, Any], r: Schema, spot: _Spot) -> None:
        values = [w["const"]] if "const" in w else w["enum"]
        for value in values if isinstance(values, list) else []:
            verdict = accepts(r, value)
            if verdict is None:
                self.miss(spot, f"{spot.what}: cannot tell whether {self.reader} accepts "
                                f"{_show(value)} (the check is conservative)")
            elif not verdict:
                self.miss(spot, f"{spot.what} may be {_show(value)} in {self.writer} "
                                f"messages, which {self.reader} does not accept")

    def _combinators(self, w: dict[str, Any], r: dict[str, Any], spot: _Spot) -> None:
        for part in r.get("allOf", []):
            self.sub(w, part, spot)
        for key in ("anyOf", "oneOf"):
            branches = r.get(key)
            if not isinstance(branches, list) or w.get(key) == branches:
                continue
            if key == "oneOf" and not _disjoint(branches):
                self.miss(spot, f"{spot.what}: cannot prove that exactly one oneOf branch of "
                                f"{self.reader} accepts {self.writer} messages (the check "
                                "is conservative with oneOf)")
            elif all(self.trial(w, branch, spot) for branch in branches):
                self.miss(spot, f"{spot.what}: no {key} branch of {self.reader} accepts "
                                f"every {self.writer} value")

    def _type(self, w: dict[str, Any], r: dict[str, Any], spot: _Spot) -> frozenset[str] | None:
        wanted, kinds = _types(r), _types(w)
        if wanted is None:
            return kinds
        must = " or ".join(sorted(wanted))
        if kinds is None:
            self.miss(spot, f"{spot.what} must be {must} in {self.reader} but may be of any "
                            f"type in {self.writer} messages")
            return None
        for kind in sorted(kinds):
            if not _covered(kind, wanted):
                self.miss(spot, f"{spot.what} must be {must} in {self.reader} but may be "
                                f"{kind} in {self.writer} messages")
        return frozenset(k for k in kinds if _covered(k, wanted))

    def _narrower(self, spot: _Spot, key: str, wanted: Any, had: Any) -> None:
        was = "none" if had is None else _show(had)
        self.miss(spot, f"{spot.what}: {key} {_show(wanted)} in {self.reader} is narrower "
                        f"than in {self.writer} ({was})")

    def _numbers(self, w: dict[str, Any], r: dict[str, Any], spot: _Spot) -> None:
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
                self._narrower(spot, key, r.get(key), w.get(inclusive, w.get(exclusive)))
        step = _number(r.get("multipleOf"))
        if step is not None:
            have_step = _number(w.get("multipleOf"))
            integers = _types(w) == frozenset({"integer"})
            ok = (have_step is not None and (have_step / step).denominator == 1) or (
                integers and (1 / step).denominator == 1)
            if not ok:
                self._narrower(spot, "multipleOf", r["multipleOf"], w.get("multipleOf"))

    def _sizes(self, w: dict[str, Any], r: dict[str, Any], spot: _Spot, kind: str) -> None:
        """``min<kind>`` / ``max<kind>``: the reader's range must hold the writer's."""
        low, high = f"min{kind}", f"max{kind}"
        want, have = r.get(low), w.get(low)
        if isinstance(want, int) and want > 0 and not (isinstance(have, int) and have >= want):
            self._narrower(spot, low, want, have)
        want, have = r.get(high), w.get(high)
        if isinstance(want, int) and not (isinstance(have, int) and have <= want):
            self._narrower(spot, high, want, have)

    def _strings(self, w: dict[str, Any], r: dict[str, Any], spot: _Spot) -> None:
        self._sizes(w, r, spot, "Length")
        for key in ("pattern", "format"):
            if key in r and w.get(key) != r[key]:
                had = _show(w[key]) if key in w else "none"
                self.miss(spot, f"{spot.what}: {key} {_show(r[key])} in {self.reader} is not "
                                f"{self.writer}'s ({had}; compared as written)")

    def _array(self, w: dict[str, Any], r: dict[str, Any], spot: _Spot) -> None:
        self._sizes(w, r, spot, "Items")
        if r.get("uniqueItems") is True and w.get("uniqueItems") is not True:
            self._narrower(spot, "uniqueItems", True, w.get("uniqueItems"))
        tuples = "prefixItems" in r or isinstance(r.get("items"), list) \
            or isinstance(w.get("items"), list)
        if tuples:
            if (r.get("prefixItems"), r.get("items")) != (w.get("prefixItems"), w.get("items")):
                self.miss(spot, f"{spot.what}: cannot prove tuple items (prefixItems) "
                                "compatible (the check is conservative)")
            return
        for item in [*w.get("prefixItems", ()), w.get("items", True)]:
            self.sub(item, r.get("items", True), spot.below("*"))

    def _object(self, w: dict[str, Any], r: dict[str, Any], spot: _Spot) -> None:
        self._sizes(w, r, spot, "Properties")
        present = set(w.get("required", ()))
        hint = " (make it optional or add a default upcaster)" if self.new_is_reader else ""
        listed = _Spot(spot.at, self.lines.get(id(r.get("required")), spot.line)
                       if self.new_is_reader else spot.line)
        for name in r.get("required", ()):
            if name not in present:
                inner = listed.below(name)
                self.miss(inner, f"{inner.what} is required in {self.reader} but "
                                 f"{self.writer} messages may lack it{hint}")
        w_props: dict[str, Any] = w.get("properties", {})
        r_props: dict[str, Any] = r.get("properties", {})
        # a name matching a writer's patternProperties may hold anything we do not follow
        w_extra = True if "patternProperties" in w else w.get("additionalProperties", True)
        for name, wanted in r_props.items():
            inner = spot.below(name)
            if name in w_props:
                self.sub(w_props[name], wanted, inner)
            elif found := self.trial(w_extra, wanted, inner):
                why = (f"is new in {self.reader}, but {self.writer} messages may already "
                       f"carry it with any value (close {self.writer} with "
                       "additionalProperties: false, or drop the field in an upcaster)"
                       if self.new_is_reader else
                       f"is declared in {self.reader} but not in {self.writer}, whose "
                       f"messages may carry it with any value (keep declaring it, or close "
                       f"{self.writer} with additionalProperties: false)")
                self.miss(_Spot(inner.at, found[0].line), f"{inner.what} {why}")
        self._extra(w, r, spot)

    def _extra(self, w: dict[str, Any], r: dict[str, Any], spot: _Spot) -> None:
        """The reader's ``additionalProperties`` against the writer's undeclared names."""
        r_extra = r.get("additionalProperties", True)
        if _strip(r_extra) is True:
            return
        w_props: dict[str, Any] = w.get("properties", {})
        r_props: dict[str, Any] = r.get("properties", {})
        if "patternProperties" in r:
            if w.get("additionalProperties", True) != r_extra or w_props.keys() - r_props:
                self.miss(spot, f"{spot.what}: cannot prove {self.writer}'s properties fit "
                                f"{self.reader}'s patternProperties (the check is "
                                "conservative)")
            return
        for name, held in w_props.items():
            if name not in r_props:
                self.sub(held, r_extra, spot.below(name))
        w_extra = True if "patternProperties" in w else w.get("additionalProperties", True)
        if _strip(w_extra) is not False and self.trial(w_extra, r_extra, spot):
            self.miss(spot, f"{spot.what}: {self.writer} messages may carry properties "
                            f"{self.reader} does not declare, and {self.reader} does not "
                            "allow them (additionalProperties)")


def _both(first: dict[str, Any], second: Schema) -> Schema:
    if not first:
        return second
    merged = _merge([first, second])
    return merged if merged is not None else {"allOf": [first, second]}


def _merge(parts: list[Schema]) -> Schema | None:
    """One schema meaning all of ``parts`` (None when they do not merge simply)."""
    out: dict[str, Any] = {}
    for part in parts:
        if part is True:
            continue
        if not isinstance(part, dict) or "allOf" in part:
            return None
        for key, value in part.items():
            if key not in out or out[key] == value:
                out[key] = value
            elif key == "required":
                out[key] = sorted({*out[key], *value})
            elif key == "properties":
                shared = {**out[key], **value}
                for name in out[key].keys() & value.keys():
                    shared[name] = {"allOf": [out[key][name], value[name]]}
                out[key] = shared
            elif key == "type":
                kinds = (_types({"type": out[key]}) or frozenset()) & \
                    (_types({"type": value}) or frozenset())
                out[key] = sorted(kinds)
            else:
                return None
    return out


def _disjoint(branches: list[Schema]) -> bool:
    """True when every branch declares types no other branch has (oneOf reads as anyOf)."""
    seen: set[str] = set()
    for branch in branches:
        kinds = _types(branch) if isinstance(branch, dict) else None
        if kinds is None:
            return False
        widened = kinds | ({"integer"} if "number" in kinds else set())
        if widened & seen:
            return False
        seen |= widened
    return True


def breaks(writer: Schema, reader: Schema, *, writer_label: str, reader_label: str,
           lines: Mapping[int, int], new_is_reader: bool) -> list[Break]:
    """Every reason a message valid under ``writer`` may be refused by ``reader``.

    ``lines`` places each break in the new version's file (the reader's when
    ``new_is_reader``, else the writer's).
    """
    compare = _Compare(writer_label, reader_label, lines, new_is_reader)
    compare.sub(writer, reader, _Spot("", None))
    unique: dict[tuple[str, str], Break] = {}
    for found in compare.found:
        unique.setdefault((found.field, found.why), found)
    return list(unique.values())

