"""Upcasters: the declared steps that turn a message of one schema version into the next.

A step is one of ``rename``, ``default``, ``drop``, ``move`` (fields named by
dotted paths, ``customer.id``) or ``function`` (an importable
``module:function``, ``dict -> dict``).  Each step is pure and has two faces:

* ``apply`` transforms a message body (a fresh copy: the decoded body is
  shared by every route and is never mutated);
* ``widen`` transforms the *writer's schema* the same way, so that the
  backward compatibility check (``router.evolution.compat``) reads old messages as the
  router will hand them on.  It over-approximates: where a step meets a schema
  it cannot follow (combinators, an undeclared parent), the touched field
  becomes "anything", which the checker then refuses to accept unproven.

A ``function`` step cannot be widened: a step with one is trusted by the
compatibility check, and the result is validated at the router anyway.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, assert_never

__all__ = [
    "Default", "Drop", "Failed", "Function", "Move", "Step", "StepFailed", "Upcaster",
    "describe", "import_function", "run",
]

Schema = Any  # an inlined JSON Schema: a dict or a bool

# Keywords that make an object schema more than "these properties, these required":
# a step that renames or moves a field below such a schema cannot say what it becomes.
_OPAQUE = frozenset({"allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$ref",
                     "dependentRequired", "dependentSchemas", "dependencies",
                     "patternProperties", "unevaluatedProperties", "propertyNames"})


class StepFailed(ValueError):
    """A step met a body it cannot transform (a parent that is not an object...)."""


def _parent(body: Any, path: tuple[str, ...], *, create: bool) -> dict[str, Any] | None:
    """The object holding ``path[-1]``; None when absent (and not created)."""
    node = body
    for i, name in enumerate(path[:-1]):
        if not isinstance(node, dict):
            raise StepFailed(f"{'.'.join(path[:i]) or 'the message'} is not an object")
        if name not in node:
            if not create:
                return None
            node[name] = {}
        node = node[name]
    if not isinstance(node, dict):
        raise StepFailed(f"{'.'.join(path[:-1]) or 'the message'} is not an object")
    return node


# --- the writer's schema, widened -------------------------------------------------------

def _plain(schema: Schema) -> bool:
    return isinstance(schema, dict) and not (_OPAQUE & schema.keys())


def _field(obj: Schema, name: str) -> tuple[Schema | None, bool]:
    """What ``name`` holds in instances of ``obj``: (schema or None if never present,
    always present)."""
    if not isinstance(obj, dict):
        return (None, False) if obj is False else (True, False)
    required = name in obj.get("required", ())
    properties = obj.get("properties", {})
    if name in properties:
        held = properties[name]
        return (None, False) if held is False else (held, required)
    extra = obj.get("additionalProperties", True)
    return (None, False) if extra is False else (extra, required)


def _with(obj: dict[str, Any], name: str, schema: Schema | None, required: bool) -> dict[str, Any]:
    """``obj`` with ``name`` holding ``schema`` (None: never present)."""
    out = dict(obj)
    out["properties"] = {**obj.get("properties", {}), name: False if schema is None else schema}
    names = [n for n in obj.get("required", ()) if n != name]
    out["required"] = [*names, name] if required and schema is not None else names
    return out


def _either(first: Schema | None, second: Schema | None) -> Schema | None:
    if first is None or second is None:
        return second if first is None else first
    return {"anyOf": [first, second]}


def _take(schema: Schema, path: tuple[str, ...]) -> tuple[Schema, Schema | None, bool]:
    """Remove ``path`` from ``schema``: (the schema without it, what it held, always there)."""
    name, rest = path[0], path[1:]
    if not _plain(schema):
        return True, True, False  # cannot follow: anything may be anywhere
    held, required = _field(schema, name)
    if not rest:
        return _with(schema, name, None, False), held, required
    if held is None:
        return schema, None, False
    inner, taken, inner_required = _take(held, rest)
    return _with(schema, name, inner, required), taken, required and inner_required


def _put(schema: Schema, path: tuple[str, ...], value: Schema | None, always: bool) -> Schema:
    """Set ``path`` to ``value`` (when present; ``always``: whenever ``schema`` holds)."""
    if value is None:
        return schema
    name, rest = path[0], path[1:]
    if not _plain(schema):
        return True
    held, required = _field(schema, name)
    if not rest:
        placed = value if always else _either(held, value)
        return _with(schema, name, placed, always or required)
    if held is None:
        held = {"type": "object", "properties": {}, "additionalProperties": False}
    return _with(schema, name, _put(held, rest, value, always), always or required)


# --- the steps ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Move:
    """Move (or, within one object, rename) a field; nothing happens when it is absent.

    A value already at the destination is replaced.
    """

    source: tuple[str, ...]
    target: tuple[str, ...]

    def apply(self, body: Any) -> Any:
        parent = _parent(body, self.source, create=False)
        if parent is None or self.source[-1] not in parent:
            return body
        value = parent.pop(self.source[-1])
        destination = _parent(body, self.target, create=True)
        assert destination is not None  # noqa: S101 -- create=True always returns one
        destination[self.target[-1]] = value
        return body

    def widen(self, schema: Schema) -> Schema:
        without, held, always = _take(schema, self.source)
        return _put(without, self.target, held, always)


@dataclass(frozen=True, slots=True)
class Default:
    """Set a field that is absent (parents are created as objects)."""

    path: tuple[str, ...]
    value: Any

    def apply(self, body: Any) -> Any:
        parent = _parent(body, self.path, create=True)
        assert parent is not None  # noqa: S101 -- create=True always returns one
        if self.path[-1] not in parent:
            parent[self.path[-1]] = copy.deepcopy(self.value)
        return body

    def widen(self, schema: Schema) -> Schema:
        _, held, always = _take(schema, self.path)
        if always:
            return schema
        return _put(schema, self.path, _either(held, {"const": self.value}), always=True)


@dataclass(frozen=True, slots=True)
class Drop:
    """Remove a field if present."""

    path: tuple[str, ...]

    def apply(self, body: Any) -> Any:
        parent = _parent(body, self.path, create=False)
        if parent is not None:
            parent.pop(self.path[-1], None)
        return body

    def widen(self, schema: Schema) -> Schema:
        return _take(schema, self.path)[0]


@dataclass(frozen=True, slots=True)
class Function:
    """A named Python function ``dict -> dict``; trusted by the compatibility check."""

    target: str  # "module:function", for messages
    function: Callable[[Any], Any]

    def apply(self, body: Any) -> Any:
        return self.function(body)

    def widen(self, schema: Schema) -> Schema:
        """Unknowable: anything (the compatibility check trusts a function step instead)."""
        del schema
        return True


Step = Move | Default | Drop | Function


def import_function(target: str) -> Callable[[Any], Any] | str:
    """The callable named ``module:function``, or why it cannot be had."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        return f"function {target!r} must be written 'module:function'"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 -- any import failure is a configuration problem
        return f"function {target!r}: cannot import {module_name!r}: {exc}"
    found: Any = module
    for part in attribute.split("."):
        found = getattr(found, part, None)
    if not callable(found):
        return f"function {target!r}: {module_name!r} has no function {attribute!r}"
    return found  # type: ignore[no-any-return]  # callable(found) checked above


@dataclass(frozen=True, slots=True)
class Upcaster:
    """The steps from version ``source`` to the next version ``target`` of a type."""

    source: int
    target: int
    steps: tuple[Step, ...] = ()
    line: int | None = None

    @property
    def trusted(self) -> bool:
        """True when a function step makes the schema transformation unknowable."""
        return any(isinstance(s, Function) for s in self.steps)

    def widen(self, schema: Schema) -> Schema:
        """The writer's schema as its messages look after this upcaster."""
        for step in self.steps:
            schema = step.widen(schema)
        return schema


@dataclass(frozen=True, slots=True)
class Failed:
    """Why an upcast did not produce a message."""

    reason: str


def run(chain: Sequence[Upcaster], body: Any) -> Any | Failed:
    """``body`` after every upcaster of ``chain`` (a fresh value), or why a step failed."""
    result = copy.deepcopy(body)
    for upcaster in chain:
        for step in upcaster.steps:
            try:
                result = step.apply(result)
            except StepFailed as exc:
                return Failed(f"upcast v{upcaster.source}->v{upcaster.target}: "
                              f"{describe(step)}: {exc}")
            except Exception as exc:  # noqa: BLE001 -- user code: any failure dead-letters
                return Failed(f"upcast v{upcaster.source}->v{upcaster.target}: "
                              f"{describe(step)} raised {type(exc).__name__}: {exc}")
    return result


def describe(step: Step) -> str:
    """One step as written, for messages."""
    match step:
        case Move(source=source, target=target):
            return f"move {'.'.join(source)} -> {'.'.join(target)}"
        case Default(path=path):
            return f"default {'.'.join(path)}"
        case Drop(path=path):
            return f"drop {'.'.join(path)}"
        case Function(target=target):
            return f"function {target}"
        case _:
            assert_never(step)
