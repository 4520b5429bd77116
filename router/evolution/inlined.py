"""A schema with every ``$ref`` replaced by its target, for comparing versions (pure).

The compatibility check (``router.evolution.compat``) compares two schemas keyword by
keyword; it is far simpler over trees without references.  ``inline`` follows
``$ref`` the way the registry resolves it (``router.evolution.refs``: relative to the
base URI of the file or of the nearest ``$id``, absolute URIs naming a file or
an embedded resource, a JSON pointer fragment) through the loaded documents
only.  A recursive reference, a named anchor or a dangling one stays
a ``{"$ref": ...}`` the checker refuses to prove anything about.  Annotation
keywords are dropped so that editing a ``description`` changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote, urldefrag

from router.evolution.refs import Path_, join, walk

__all__ = ["BASE_URI", "Document", "Inlined", "Schema", "inline"]

BASE_URI = "mcp://schemas/"
Schema = Any  # dict or bool

# Keywords that never change which instances are valid (format is asserted here: not listed).
_ANNOTATIONS = frozenset({
    "title", "description", "$comment", "examples", "default", "deprecated", "readOnly",
    "writeOnly", "$schema", "$id", "$anchor", "$dynamicAnchor", "$defs", "definitions",
    "$vocabulary", "contentMediaType", "contentEncoding", "contentSchema",
})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas"})
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_ONE = frozenset({"items", "additionalProperties", "not", "if", "then", "else",
                         "contains", "propertyNames", "unevaluatedProperties",
                         "unevaluatedItems", "additionalItems"})
_MAX_DEPTH = 64  # $ref nesting followed while inlining; deeper stays a $ref (unprovable)
_At = tuple[str, Path_, str]  # a node's file, its path there, and the base URI in force


class Document(Protocol):
    """A loaded schema file as inlining reads it (``router.config.source.Document`` is one)."""

    @property
    def file(self) -> str: ...
    @property
    def data(self) -> Any: ...
    def line(self, path: Path_) -> int | None: ...


# --- inlining ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Inlined:
    """A schema with every ``$ref`` replaced by its target, and where its nodes were written.

    ``lines`` maps ``id(node)`` to the line in ``file`` for the nodes written in
    that file (a ``$ref``'s target counts as written where the ``$ref`` is), and
    for their ``required`` lists.
    """

    file: str
    schema: Schema
    lines: Mapping[int, int] = field(default_factory=dict)


def _target(ref: str, base: str, resources: Mapping[str, tuple[str, Path_]]
            ) -> tuple[str, Path_] | None:
    """The file (relative to schemas/) and path in it a ``$ref`` names, if it can say."""
    resource, fragment = urldefrag(join(base, ref))
    found = resources.get(resource)
    if found is None or (fragment and not fragment.startswith("/")):
        return None  # a meta-schema, or a named anchor: not followed
    path = tuple(unquote(p).replace("~1", "/").replace("~0", "~")
                 for p in fragment.split("/")[1:]) if fragment else ()
    return found[0], (*found[1], *path)


def _at(data: Any, path: Path_) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and str(part).isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


@dataclass
class _Inliner:
    own: str  # the file whose lines are recorded
    docs: Mapping[str, Document]
    resources: Mapping[str, tuple[str, Path_]]  # every file and embedded $id: where it is
    lines: dict[int, int] = field(default_factory=dict)

    def node(self, value: Any, rel: str, path: Path_, stack: tuple[tuple[str, Path_], ...],
             base: str) -> Schema:
        if not isinstance(value, dict):
            return value
        if isinstance(value.get("$id"), str):
            base = urldefrag(join(base, value["$id"]))[0]
        ref = value.get("$ref")
        if isinstance(ref, str):
            out = self._ref(ref, value, (rel, path, base), stack)
        else:
            out = {key: self._keyword(key, item, (rel, (*path, key), base), stack)
                   for key, item in value.items() if key not in _ANNOTATIONS}
        if rel == self.own and isinstance(out, dict):
            doc = self.docs[rel]
            for node, where in ((out, path), (out.get("required"), (*path, "required"))):
                line = doc.line(where)
                if isinstance(node, dict | list) and line is not None:
                    self.lines[id(node)] = line  # the same objects live on in the inlined tree
        return out

    def _ref(self, ref: str, value: dict[str, Any], at: _At,
             stack: tuple[tuple[str, Path_], ...]) -> Schema:
        rel, path, base = at
        target = _target(ref, base, self.resources)
        found = None if target is None or target[0] not in self.docs \
            else _at(self.docs[target[0]].data, target[1])
        if target is None or found is None or target in stack or len(stack) >= _MAX_DEPTH:
            pointer = "".join(f"/{part}" for part in target[1]) if target else ""
            resolved: Schema = {"$ref": f"{BASE_URI}{target[0]}#{pointer}" if target
                                else join(base, ref)}
        else:
            resolved = self.node(found, target[0], target[1], (*stack, target),
                                 self._base_of(*target))
        siblings = {k: v for k, v in value.items() if k != "$ref" and k not in _ANNOTATIONS}
        if not siblings:
            return dict(resolved) if isinstance(resolved, dict) else resolved
        rest = self.node(siblings, rel, path, stack, base)
        return {"allOf": [resolved, rest]}

    def _base_of(self, rel: str, path: Path_) -> str:
        """The base URI above ``path`` in ``rel``: its file's, changed by each ``$id`` over it."""
        base = BASE_URI + rel
        for depth in range(len(path)):  # the node's own $id is node()'s to apply
            above = _at(self.docs[rel].data, path[:depth])
            if isinstance(above, dict) and isinstance(above.get("$id"), str):
                base = urldefrag(join(base, above["$id"]))[0]
        return base

    def _keyword(self, key: str, item: Any, at: _At,
                 stack: tuple[tuple[str, Path_], ...]) -> Any:
        rel, path, base = at
        if key in _SCHEMA_MAPS and isinstance(item, dict):
            return {k: self.node(v, rel, (*path, k), stack, base) for k, v in item.items()}
        if (key in _SCHEMA_LISTS or key == "items") and isinstance(item, list):
            return [self.node(v, rel, (*path, i), stack, base) for i, v in enumerate(item)]
        if key in _SCHEMA_ONE:
            return self.node(item, rel, path, stack, base)
        return item


def inline(rel: str, docs: Mapping[str, Document]) -> Inlined:
    """``docs[rel]`` with every ``$ref`` into ``docs`` inlined (recursion stays a ``$ref``)."""
    resources = {uri: (name, path) for name, doc in docs.items()
                 for uri, path in walk(doc.data, BASE_URI + name).identified.items()}
    inliner = _Inliner(rel, docs, resources)
    schema = inliner.node(docs[rel].data, rel, (), ((rel, ()),), BASE_URI + rel)
    return Inlined(docs[rel].file, schema, inliner.lines)
