"""What a JSON (sub)schema says, read conservatively: its types, emptiness and merges.

Pure functions over schemas with every ``$ref`` inlined (``router.evolution.inlined``).
Where a question has no simple answer they say so (``None``, ``False``)
rather than guess: ``merge`` declines parts it cannot merge keyword by
keyword, ``disjoint`` holds only for branches whose declared types never
overlap, and ``accepts`` answers with the router's own validator options and
``None`` when a subschema does not compile on its own. Nothing is fetched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jsonschema_rs

from router.evolution.inlined import Schema

__all__ = ["accepts", "both", "covered", "disjoint", "merge", "relevant", "strip", "types_of"]


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


def types_of(schema: dict[str, Any]) -> frozenset[str] | None:
    """The types ``type`` allows; None when it does not say (any type)."""
    raw = schema.get("type")
    if raw is None:
        return None
    return frozenset([raw] if isinstance(raw, str) else raw)


def covered(kind: str, kinds: frozenset[str]) -> bool:
    """Whether a value of type ``kind`` is one of ``kinds`` (an ``integer`` is a ``number``)."""
    return kind in kinds or (kind == "integer" and "number" in kinds)


def relevant(kinds: frozenset[str] | None, wanted: Iterable[str]) -> bool:
    """Whether values of ``kinds`` (None: any) may be of some type in ``wanted``."""
    return kinds is None or any(covered(k, kinds) or (k == "number" and "integer" in kinds)
                                for k in wanted)


def strip(schema: Schema) -> Schema:
    """True for an empty schema; ``$ref`` left by recursion dropped from a writer."""
    if schema is True or schema == {}:
        return True
    return schema


def both(first: dict[str, Any], second: Schema) -> Schema:
    """One schema meaning ``first`` and ``second``: merged, else their ``allOf``."""
    if not first:
        return second
    merged = merge([first, second])
    return merged if merged is not None else {"allOf": [first, second]}


def merge(parts: list[Schema]) -> Schema | None:
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
                kinds = (types_of({"type": out[key]}) or frozenset()) & \
                    (types_of({"type": value}) or frozenset())
                out[key] = sorted(kinds)
            else:
                return None
    return out


def disjoint(branches: list[Schema]) -> bool:
    """True when every branch declares types no other branch has (oneOf reads as anyOf)."""
    seen: set[str] = set()
    for branch in branches:
        kinds = types_of(branch) if isinstance(branch, dict) else None
        if kinds is None:
            return False
        widened = kinds | ({"integer"} if "number" in kinds else set())
        if widened & seen:
            return False
        seen |= widened
    return True
