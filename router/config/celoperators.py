"""CEL's operators and field selection over the static types of ``router.config.celtypes``.

The operator table of CEL's checker (``cel-spec/doc/langdef.md``, "Gradual type
checking"), as ``router.config.celcheck`` applies it: each operator's result
type from its operands' types, or ``TypeError_`` when it is not defined for
them; ``dyn`` is accepted wherever a value is needed.  Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from router.config.celtypes import DYN, NUMBER, PROPERTIES, ListT, MapT, ObjectT, Prim, Type, merge

__all__ = ["BOOL", "BYTES", "DOUBLE", "DURATION", "INT", "NULL", "STRING", "TIMESTAMP", "UINT",
           "TypeError_", "binary", "element_of", "is_prim", "merge_all", "numeric", "select_field"]

BOOL, INT, UINT, DOUBLE = Prim("bool"), Prim("int"), Prim("uint"), Prim("double")
STRING, BYTES, NULL = Prim("string"), Prim("bytes"), Prim("null")
TIMESTAMP, DURATION = Prim("timestamp"), Prim("duration")
_NUMERIC = frozenset({"int", "uint", "double", "number"})
_ORDERED = frozenset({"string", "bytes", "bool", "timestamp", "duration"})

class TypeError_(ValueError):  # not the builtin: a type error in an expression
    """The expression cannot type-check; the message says where and why."""


def numeric(t: Type) -> bool:
    return isinstance(t, Prim) and t.name in _NUMERIC


def is_prim(t: Type, *names: str) -> bool:
    return t == DYN or (isinstance(t, Prim) and t.name in names)


def arithmetic(op: str, a: Type, b: Type) -> Type | None:
    """The result of a numeric ``a op b``, or None when CEL has no such overload."""
    if not (numeric(a) and numeric(b)) or (op == "%" and DOUBLE in (a, b)):
        return None
    if a == b:
        return a
    if NUMBER in (a, b) and UINT not in (a, b):
        return NUMBER  # depends on how the publisher wrote the number
    return None  # CEL never converts between int, uint and double


def plus(a: Type, b: Type) -> Type | None:
    if isinstance(a, Prim) and isinstance(b, Prim) and a == b and a.name in ("string", "bytes",
                                                                              "duration"):
        return a
    if isinstance(a, ListT) and isinstance(b, ListT):
        return ListT(merge(a.element, b.element))
    if {a, b} == {TIMESTAMP, DURATION}:
        return TIMESTAMP
    return arithmetic("+", a, b)


def minus(a: Type, b: Type) -> Type | None:
    if a == TIMESTAMP and b in (TIMESTAMP, DURATION):
        return DURATION if b == TIMESTAMP else TIMESTAMP
    if a == b == DURATION:
        return DURATION
    return arithmetic("-", a, b)


def ordered(a: Type, b: Type) -> bool:
    if numeric(a) and numeric(b):
        return True
    return isinstance(a, Prim) and a == b and a.name in _ORDERED


def comparable(a: Type, b: Type) -> bool:
    """``==`` between two values that can ever be equal."""
    if not (isinstance(a, Prim) and isinstance(b, Prim)) or NULL in (a, b):
        return True
    return a == b or (numeric(a) and numeric(b))


def binary(op: str, a: Type, b: Type) -> Type:
    if DYN in (a, b):
        return BOOL if op in ("&&", "||", "==", "!=", "<", "<=", ">", ">=", "in") else DYN
    found: Type | None
    if op in ("&&", "||"):
        found = BOOL if a == b == BOOL else None
    elif op in ("==", "!="):
        found = BOOL if comparable(a, b) else None
    elif op in ("<", "<=", ">", ">="):
        found = BOOL if ordered(a, b) else None
    elif op == "in":
        container = b.element if isinstance(b, ListT) else b.key if isinstance(b, MapT) else None
        found = BOOL if container is not None and (container == DYN or comparable(a, container)) \
            else None
    elif op == "+":
        found = plus(a, b)
    elif op == "-":
        found = minus(a, b)
    else:
        found = arithmetic(op, a, b)
    if found is None:
        hint = "; CEL does not convert between them: write 1.0, or double(x)" \
            if numeric(a) and numeric(b) else ""
        raise TypeError_(f"no operator {op!r} for {a} and {b}{hint}")
    return found


def select_field(t: Type, name: str) -> Type:
    if t == DYN:
        return DYN
    if isinstance(t, MapT):
        return t.value
    if isinstance(t, ObjectT):
        if name in t.fields:
            return t.fields[name]
        if t.extra is not None:
            return t.extra
        known = ", ".join(sorted(t.fields)) or "none"
        where = "" if t is PROPERTIES else " in any schema version it can have"
        raise TypeError_(f"{t} has no field {name!r}{where} (fields: {known})")
    raise TypeError_(f"a {t} has no fields ({name!r} asked for)")


def merge_all(types: Iterable[Type]) -> Type:
    """The merge of ``types``; ``DYN`` for none (an empty list literal)."""
    merged: Type | None = None
    for kind in types:
        merged = kind if merged is None else merge(merged, kind)
    return DYN if merged is None else merged


def element_of(t: Type, what: str) -> Type:
    if t == DYN:
        return DYN
    if isinstance(t, ListT):
        return t.element
    if isinstance(t, MapT):
        return t.key
    if isinstance(t, ObjectT):
        return STRING  # a JSON object is a map keyed by its field names
    raise TypeError_(f"{what} needs a list or a map, not a {t}")
