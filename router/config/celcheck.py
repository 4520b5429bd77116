"""Static type-checking of a route's ``when`` against its message type's schemas (pure).

What CEL's checker does with declared types (``cel-spec/doc/langdef.md``,
"Gradual type checking"), over the subset of CEL that routes use: every
operator and function is looked up by the types of its operands, a field is
looked up in the object type the schema declares, and the whole expression
must be a ``bool``.  ``message`` has the type of every schema version the
route can receive (``router.config.celtypes``), ``headers`` is a map of anything,
``properties`` has the fixed AMQP property names.  A value of type ``dyn``
(whatever the schema leaves open) is accepted wherever a value is needed, so
a refused expression is one that can never be ``true`` as written: a result
that is not a boolean, an operator between types it is not defined for, a
field no version of the schema declares.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import assert_never

from router.config.celoperators import (
    BOOL,
    BYTES,
    DOUBLE,
    DURATION,
    INT,
    STRING,
    TIMESTAMP,
    UINT,
    TypeError_,
    binary,
    element_of,
    is_prim,
    merge_all,
    numeric,
    select_field,
)
from router.config.celparse import (
    Binary,
    Call,
    Conditional,
    Ident,
    Index,
    ListLit,
    Literal,
    MapLit,
    Node,
    Select,
    Unary,
)
from router.config.celtypes import DYN, NUMBER, PROPERTIES, ListT, MapT, ObjectT, Prim, Type, merge

# TypeError_ is re-exported: callers catch it from the checker.
__all__ = ["TypeError_", "check", "type_of"]

_CONVERSIONS: Mapping[str, Type] = {
    "int": INT, "uint": UINT, "double": DOUBLE, "string": STRING, "bytes": BYTES,
    "bool": BOOL, "timestamp": TIMESTAMP, "duration": DURATION, "dyn": DYN, "type": Prim("type"),
}
_STRING_METHODS: Mapping[str, Type] = {
    "contains": BOOL, "startsWith": BOOL, "endsWith": BOOL, "matches": BOOL,
    "lowerAscii": STRING, "upperAscii": STRING, "trim": STRING, "replace": STRING,
    "substring": STRING, "charAt": STRING, "split": ListT(STRING), "indexOf": INT,
    "lastIndexOf": INT,
}
_TIME_METHODS = frozenset({"getFullYear", "getMonth", "getDate", "getDayOfMonth",
                           "getDayOfWeek", "getDayOfYear", "getHours", "getMinutes",
                           "getSeconds", "getMilliseconds"})
_MACROS = frozenset({"exists", "all", "exists_one", "map", "filter"})


class _Checker:
    def __init__(self, variables: Mapping[str, Type]) -> None:
        self.scopes: list[Mapping[str, Type]] = [variables]

    def variable(self, name: str) -> Type:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return DYN  # unknown variables are reported by router.config.route_table before this runs

    def of(self, node: Node) -> Type:
        match node:
            case Literal(kind=kind):
                return Prim(kind)
            case Ident(name=name):
                return self.variable(name)
            case Select(operand=operand, field=name):
                return select_field(self.of(operand), name)
            case Index():
                return self.index(node)
            case Unary():
                return self.unary(node)
            case Binary(op=op, left=left, right=right):
                return binary(op, self.of(left), self.of(right))
            case Conditional():
                return self.conditional(node)
            case ListLit(items=items):
                return ListT(merge_all(self.of(item) for item in items))
            case MapLit(entries=entries):
                return MapT(merge_all(self.of(k) for k, _ in entries),
                            merge_all(self.of(v) for _, v in entries))
            case Call():
                return self.call(node)
            case _:
                assert_never(node)

    def index(self, node: Index) -> Type:
        container, index = self.of(node.operand), self.of(node.index)
        if isinstance(node.index, Literal) and node.index.kind == "string" and \
                isinstance(container, ObjectT):
            return select_field(container, str(node.index.value))
        if isinstance(container, ListT):
            if not (is_prim(index, "int", "uint") or index == NUMBER):
                raise TypeError_(f"a list index must be an int, not a {index}")
            return container.element
        if isinstance(container, MapT):
            return container.value
        if isinstance(container, ObjectT) or container == DYN:
            return DYN
        raise TypeError_(f"cannot index a {container}")

    def unary(self, node: Unary) -> Type:
        operand = self.of(node.operand)
        if node.op == "!" and is_prim(operand, "bool"):
            return BOOL
        negatable = operand in (DYN, DURATION) or (numeric(operand) and operand != UINT)
        if node.op == "-" and negatable:
            return operand
        raise TypeError_(f"no operator {node.op!r} for {operand}")

    def conditional(self, node: Conditional) -> Type:
        condition = self.of(node.condition)
        if not is_prim(condition, "bool"):
            raise TypeError_(f"the condition of '? :' must be a bool, not a {condition}")
        return merge(self.of(node.then), self.of(node.otherwise))

    def call(self, node: Call) -> Type:
        if node.target is not None and node.name in _MACROS and node.args and \
                isinstance(node.args[0], Ident):
            return self.macro(node.target, node.name, node.args[0].name, node.args[1:])
        if node.target is None:
            return self.function(node)
        return self.method(node, self.of(node.target), [self.of(a) for a in node.args])

    def macro(self, target: Node, name: str, variable: str, args: tuple[Node, ...]) -> Type:
        """``exists``, ``all``, ``exists_one``, ``filter``, ``map``: ``variable`` is bound to
        each element (each key of a map)."""
        element = element_of(self.of(target), f"{name}()")
        self.scopes.append({variable: element})
        try:
            kinds = [self.of(a) for a in args]
        finally:
            self.scopes.pop()
        for kind in kinds if name != "map" else kinds[:-1]:
            if not is_prim(kind, "bool"):
                raise TypeError_(f"the predicate of {name}() must be a bool, not a {kind}")
        if name == "map":
            return ListT(kinds[-1] if kinds else DYN)
        return ListT(element) if name == "filter" else BOOL

    def function(self, node: Call) -> Type:
        if node.name == "has":
            if len(node.args) != 1 or not isinstance(node.args[0], Select):
                raise TypeError_("has() takes one field selection, such as has(message.f)")
            self.of(node.args[0])  # the field must exist in some version
            return BOOL
        kinds = [self.of(a) for a in node.args]
        if node.name in _CONVERSIONS:
            return _CONVERSIONS[node.name]
        if node.name in ("size", "matches") and kinds:
            return self.method(Call(node.name, None, node.args[1:]), kinds[0], kinds[1:])
        if node.name in ("max", "min") and kinds:
            return merge_all(kinds)
        return DYN

    def method(self, node: Call, target: Type, args: list[Type]) -> Type:
        if node.name == "size":
            if target == DYN or isinstance(target, ListT | MapT | ObjectT) or \
                    is_prim(target, "string", "bytes"):
                return INT
            raise TypeError_(f"size() is not defined for a {target}")
        if node.name in _STRING_METHODS:
            if not is_prim(target, "string"):
                raise TypeError_(f"{node.name}() is a string method, not one of a {target}")
            for arg in args:
                if node.name in ("contains", "startsWith", "endsWith", "matches") and \
                        not is_prim(arg, "string"):
                    raise TypeError_(f"{node.name}() takes a string, not a {arg}")
            return _STRING_METHODS[node.name]
        if node.name == "join":
            return STRING
        if node.name in _TIME_METHODS:
            if not is_prim(target, "timestamp", "duration"):
                raise TypeError_(f"{node.name}() needs a timestamp, not a {target}")
            return INT
        return DYN


def type_of(node: Node, variables: Mapping[str, Type]) -> Type:
    """The type of ``node`` with ``variables`` declared; ``TypeError_`` when it has none."""
    return _Checker(variables).of(node)


def check(node: Node, message: Type) -> str | None:
    """Why a ``when`` over a ``message`` of this type is wrong, or None if it checks."""
    variables = {"message": message, "headers": MapT(STRING, DYN), "properties": PROPERTIES,
                 "event": MapT(STRING, DYN)}  # a CloudEvent's attributes (router.core.cloudevent)
    try:
        result = type_of(node, variables)
    except TypeError_ as exc:
        return str(exc)
    if not is_prim(result, "bool"):
        return f"the expression is a {result}, not a bool (a 'when' must be true or false)"
    return None
