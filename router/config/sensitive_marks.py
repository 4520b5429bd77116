"""Where schemas mark values sensitive: ``"x-mcp-sensitive": true``, found at load (pure).

A schema marks a value sensitive with ``"x-mcp-sensitive": true`` on its
subschema, at any depth: below ``properties``, ``items``/``prefixItems``,
``additionalProperties``, inside ``allOf``/``anyOf``/``oneOf``/``if``/``then``/
``else``, and through ``$ref`` (schemas are inlined first).  ``Marks`` are the
paths to those values; a path step is a property name, ``EACH`` (every array
item) or a ``Rest`` (every property not declared beside it).

The walks over a body that use the marks (seal, unseal, mask) are
``router.core.sensitive``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from router.config.source import Document
from router.errors import Problem
from router.evolution.inlined import inline

__all__ = ["EACH", "MARK", "Marks", "Rest", "Step", "find_marks", "pointer"]


MARK = "x-mcp-sensitive"


@dataclass(frozen=True, slots=True)
class _Each:
    def __repr__(self) -> str:
        return "[*]"


EACH = _Each()


@dataclass(frozen=True, slots=True)
class Rest:
    """Every property of an object except the ``declared`` ones (``additionalProperties``)."""

    declared: frozenset[str]

    def __repr__(self) -> str:
        return "{*}"


Step = str | _Each | Rest
Marks = tuple[tuple[Step, ...], ...]


def pointer(path: tuple[Step, ...]) -> str:
    """A mark as a JSON-pointer-like text: ``/customer/email``, ``/items/*/card``."""
    return "/" + "/".join(p if isinstance(p, str) else "*" for p in path)


@dataclass
class _Finder:
    file: str
    lines: Mapping[int, int]
    problems: list[Problem]

    def walk(self, node: Any, path: tuple[Step, ...]) -> Iterator[tuple[Step, ...]]:
        if not isinstance(node, dict):
            return
        mark = node.get(MARK)
        if mark is not None and mark is not True and mark is not False:
            self._problem(node, f"{MARK} must be true or false, got {mark!r}")
        if mark is True:
            if not path:
                self._problem(node, f"{MARK} on the whole message: mark its properties instead")
            else:
                yield path
                return  # the whole value is sealed: nothing below it is seen
        yield from self._below(node, path)

    def _below(self, node: dict[str, Any], path: tuple[Step, ...]) -> Iterator[tuple[Step, ...]]:
        properties = node.get("properties")
        declared = frozenset(properties) if isinstance(properties, dict) else frozenset()
        if isinstance(properties, dict):
            for name, sub in properties.items():
                yield from self.walk(sub, (*path, name))
        for key in ("additionalProperties", "unevaluatedProperties"):
            yield from self.walk(node.get(key), (*path, Rest(declared)))
        items = node.get("items")
        for sub in (items if isinstance(items, list) else [items]):
            yield from self.walk(sub, (*path, EACH))
        for sub in node.get("prefixItems") or ():
            yield from self.walk(sub, (*path, EACH))
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(key) or ():
                yield from self.walk(sub, path)
        for key in ("if", "then", "else"):
            yield from self.walk(node.get(key), path)
        for key in ("patternProperties", "dependentSchemas"):
            value = node.get(key)
            if isinstance(value, dict) and _marked(value):
                self._problem(node, f"{MARK} below {key} is not supported: mark the "
                                    "field under properties or additionalProperties")

    def _problem(self, node: Any, message: str) -> None:
        self.problems.append(Problem(self.file, message, self.lines.get(id(node))))


def _marked(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get(MARK) is True or any(_marked(v) for v in value.values())
    if isinstance(value, list):
        return any(_marked(v) for v in value)
    return False


def find_marks(rel: str, docs: Mapping[str, Document]) -> tuple[Marks, list[Problem]]:
    """The sensitive paths of the schema ``docs[rel]`` (with its ``$ref`` targets)."""
    problems: list[Problem] = []
    if not any(_marked(doc.data) for doc in docs.values()):
        return (), problems  # the common case: no schema marks anything
    inlined = inline(rel, docs)
    finder = _Finder(inlined.file, inlined.lines, problems)
    marks = tuple(dict.fromkeys(finder.walk(inlined.schema, ())))
    return marks, problems
