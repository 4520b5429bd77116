"""CEL types of ``when`` variables, from the JSON Schemas of the route's message type (pure).

A JSON Schema says more than CEL can hold and CEL's checker needs less than a
schema says: this keeps what the checker uses.  ``type`` maps to CEL's types
(``integer`` to ``int``, ``number`` to ``NUMBER``: an ``int`` or a ``double``
at run time, depending on how the publisher wrote it), ``properties`` to the
fields of an object, ``items`` to a list's element, ``additionalProperties``
given as a schema to a map's values.  What cannot be told (no ``type``, a
``oneOf`` of unlike branches, a recursive ``$ref``) is ``DYN``, which the
checker accepts everywhere: it refuses only what is certainly wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DYN", "NUMBER", "PROPERTIES", "ListT", "MapT", "ObjectT", "Prim", "Type", "merge",
    "of_schema",
]


@dataclass(frozen=True, slots=True)
class Prim:
    """A CEL primitive (``bool``, ``int``, ``uint``, ``double``, ``string``, ``bytes``,
    ``null``, ``timestamp``, ``duration``, ``type``), ``number`` or ``dyn``."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ListT:
    element: Type

    def __str__(self) -> str:
        return f"list({self.element})"


@dataclass(frozen=True, slots=True)
class MapT:
    key: Type
    value: Type

    def __str__(self) -> str:
        return f"map({self.key}, {self.value})"


@dataclass(frozen=True, slots=True)
class ObjectT:
    """A JSON object with declared fields; ``extra`` types undeclared ones (None: refused)."""

    name: str
    fields: Mapping[str, Type]
    extra: Type | None = None

    def __str__(self) -> str:
        return self.name

    def __hash__(self) -> int:
        return hash((self.name, tuple(self.fields)))


Type = Prim | ListT | MapT | ObjectT

DYN = Prim("dyn")
NUMBER = Prim("number")  # int or double: a JSON Schema "number"
_NUMERIC = frozenset({"int", "uint", "double", "number"})
_JSON_TYPES: Mapping[str, Type] = {"string": Prim("string"), "integer": Prim("int"),
                                   "number": NUMBER, "boolean": Prim("bool"),
                                   "null": Prim("null")}
_STRING = Prim("string")
PROPERTIES = ObjectT("properties", {
    "type": _STRING, "message_id": _STRING, "user_id": _STRING, "app_id": _STRING,
    "correlation_id": _STRING, "reply_to": _STRING, "content_type": _STRING,
    "priority": Prim("int"), "timestamp": Prim("timestamp"), "delivery_mode": Prim("int"),
    "expiration": _STRING, "routing_key": _STRING, "exchange": _STRING,
})


def merge(a: Type, b: Type) -> Type:
    """The type that holds a value of either (``DYN`` when nothing narrower does)."""
    if a == b:
        return a
    if DYN in (a, b):
        return DYN
    if isinstance(a, Prim) and isinstance(b, Prim):
        if a.name == "null" or b.name == "null":
            return b if a.name == "null" else a  # nullable: compared with == null
        if {a.name, b.name} <= _NUMERIC and "uint" not in (a.name, b.name):
            return NUMBER
        return DYN
    if isinstance(a, ListT) and isinstance(b, ListT):
        return ListT(merge(a.element, b.element))
    if isinstance(a, MapT) and isinstance(b, MapT):
        return MapT(merge(a.key, b.key), merge(a.value, b.value))
    if isinstance(a, ObjectT) and isinstance(b, ObjectT):
        fields = dict(a.fields)
        for name, kind in b.fields.items():
            fields[name] = merge(fields[name], kind) if name in fields else kind
        extra = a.extra if b.extra is None else b.extra if a.extra is None \
            else merge(a.extra, b.extra)
        return ObjectT(a.name if a.name == b.name else f"{a.name} | {b.name}", fields, extra)
    return DYN


def _merge_all(types: Iterable[Type]) -> Type:
    merged: Type | None = None
    for kind in types:
        merged = kind if merged is None else merge(merged, kind)
    return DYN if merged is None else merged


def _of_value(value: Any) -> Type:
    if isinstance(value, bool):
        return Prim("bool")
    if isinstance(value, int):
        return Prim("int")
    if isinstance(value, float):
        return NUMBER
    if isinstance(value, str):
        return _STRING
    if value is None:
        return Prim("null")
    return DYN


def _object(schema: Mapping[str, Any], name: str) -> Type:
    properties = schema.get("properties")
    additional = schema.get("additionalProperties")
    extra: Type | None = None
    if isinstance(additional, dict) or schema.get("patternProperties"):
        extra = of_schema(additional, name) if isinstance(additional, dict) else DYN
    if not isinstance(properties, dict):
        return MapT(_STRING, extra) if extra is not None else ObjectT(name, {}, DYN)
    fields = {str(k): of_schema(v, f"{name}.{k}") for k, v in properties.items()}
    return ObjectT(name, fields, extra)


def _typed(schema: Mapping[str, Any], kind: str, name: str) -> Type:
    if kind == "object":
        return _object(schema, name)
    if kind == "array":
        items = schema.get("items")
        return ListT(of_schema(items, f"{name}[]") if isinstance(items, dict) else DYN)
    return _JSON_TYPES.get(kind, DYN)


def of_schema(schema: Any, name: str) -> Type:
    """The CEL type of instances of ``schema`` (every ``$ref`` already inlined)."""
    if not isinstance(schema, dict) or "$ref" in schema:
        return DYN
    if "const" in schema:
        return _of_value(schema["const"])
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return _merge_all(_of_value(v) for v in schema["enum"])
    for combinator in ("anyOf", "oneOf"):
        if isinstance(schema.get(combinator), list) and "type" not in schema:
            return _merge_all(of_schema(s, name) for s in schema[combinator])
    if isinstance(schema.get("allOf"), list) and "type" not in schema:
        parts = [of_schema(s, name) for s in schema["allOf"]]
        return _merge_all(parts) if all(isinstance(p, ObjectT) for p in parts) else DYN
    kind = schema.get("type")
    if isinstance(kind, str):
        return _typed(schema, kind, name)
    if isinstance(kind, list) and all(isinstance(k, str) for k in kind):
        return _merge_all(_typed(schema, k, name) for k in kind)
    if isinstance(schema.get("properties"), dict):
        return _object(schema, name)
    return DYN
