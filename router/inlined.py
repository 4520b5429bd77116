"""A schema with every ``$ref`` replaced by its target, for comparing versions (pure).

The compatibility check (``router.compat``) compares two schemas keyword by
keyword; it is far simpler over trees without references.  ``inline`` follows
``$ref`` the way the registry resolves it (relative to the referring file,
``mcp://schemas/...`` absolute, a JSON pointer fragment) through the loaded
documents only.  A recursive reference, a named anchor or a dangling one stays
a ``{"$ref": ...}`` the checker refuses to prove anything about.  Annotation
keywords are dropped so that editing a ``description`` changes nothing.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urldefrag, urlsplit

from router.source import Document, Path_

__all__ = ["BASE_URI", "Inlined", "Schema", "inline"]

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


def _target(ref: str, base: str) -> tuple[str, Path_] | None:
    """The file (relative to schemas/) and JSON pointer a ``$ref`` names, if it can say."""
    target, fragment = urldefrag(ref)
    if target.startswith(BASE_URI):
        rel = target[len(BASE_URI):]
    elif urlsplit(target).scheme:
        return None
    else:
        rel = posixpath.normpath(posixpath.join(posixpath.dirname(base), target)) \
            if target else base
    if fragment and not fragment.startswith("/"):
        return None  # a named anchor: not followed
    path = tuple(unquote(p).replace("~1", "/").replace("~0", "~")
                 for p in fragment.split("/")[1:]) if fragment else ()
    return rel, path


def _at(data: Any, path: Path_) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, str) and part.isdigit() \
                and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


@dataclass
class _Inliner:
    own: str  # the file whose lines are recorded
    docs: Mapping[str, Document]
    lines: dict[int, int] = field(default_factory=dict)

    def node(self, value: Any, rel: str, path: Path_, stack: tuple[tuple[str, Path_], ...]
             ) -> Schema:
        if not isinstance(value, dict):
            return value
        ref = value.get("$ref")
        if isinstance(ref, str):
            out = self._ref(ref, value, rel, path, stack)
        else:
            out = {key: self._keyword(key, item, rel, (*path, key), stack)
                   for key, item in value.items() if key not in _ANNOTATIONS}
        if rel == self.own and isinstance(out, dict):
            doc = self.docs[rel]
            for node, where in ((out, path), (out.get("required"), (*path, "required"))):
                line = doc.line(where)
                if isinstance(node, dict | list) and line is not None:
                    self.lines[id(node)] = line  # the same objects live on in the inlined tree
        return out

    def _ref(self, ref: str, value: dict[str, Any], rel: str, path: Path_,
             stack: tuple[tuple[str, Path_], ...]) -> Schema:
        target = _target(ref, rel)
        found = None if target is None or target[0] not in self.docs \
            else _at(self.docs[target[0]].data, target[1])
        if target is None or found is None or target in stack or len(stack) >= _MAX_DEPTH:
            pointer = "".join(f"/{part}" for part in target[1]) if target else ""
            resolved: Schema = {"$ref": f"{BASE_URI}{target[0]}#{pointer}" if target else ref}
        else:
            resolved = self.node(found, target[0], target[1], (*stack, target))
        siblings = {k: v for k, v in value.items() if k != "$ref" and k not in _ANNOTATIONS}
        if not siblings:
            return dict(resolved) if isinstance(resolved, dict) else resolved
        rest = self.node(siblings, rel, path, stack)
        return {"allOf": [resolved, rest]}

    def _keyword(self, key: str, item: Any, rel: str, path: Path_,
                 stack: tuple[tuple[str, Path_], ...]) -> Any:
        if key in _SCHEMA_MAPS and isinstance(item, dict):
            return {k: self.node(v, rel, (*path, k), stack) for k, v in item.items()}
        if (key in _SCHEMA_LISTS or key == "items") and isinstance(item, list):
            return [self.node(v, rel, (*path, i), stack) for i, v in enumerate(item)]
        if key in _SCHEMA_ONE:
            return self.node(item, rel, path, stack)
        return item


def inline(rel: str, docs: Mapping[str, Document]) -> Inlined:
    """``docs[rel]`` with every ``$ref`` into ``docs`` inlined (recursion stays a ``$ref``)."""
    inliner = _Inliner(rel, docs)
    schema = inliner.node(docs[rel].data, rel, (), ((rel, ()),))
    return Inlined(docs[rel].file, schema, inliner.lines)
