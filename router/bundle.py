"""The schema registry bundled into one document: every file placed, every ``$ref`` rewritten.

A registry's files refer to each other by relative path
(``../_common/money.json#/$defs/amount``); a bundled document cannot. ``Bundle``
gives each file a *home*, a JSON pointer inside the AsyncAPI document (a
message schema at ``#/components/messages/<Type>.v<N>/payload/schema``, any
other file at ``#/components/schemas/<key>/schema``), and rewrites every
``$ref`` (relative, ``mcp://schemas/...``, same-file ``#/...`` and
``#anchor``) into a pointer to the target's home, so the meaning stays the
same and nothing outside the document is named.

Each schema is wrapped in an AsyncAPI Multi Format Schema Object with
``schemaFormat`` ``application/schema+json;version=draft-07``: AsyncAPI 3.0.0
names no format for JSON Schema 2020-12, our dialect, and draft-07 is the one
JSON Schema format every AsyncAPI tool must support. So that a draft-07 reader
sees the same constraints:

* ``$schema`` moves to the ``x-json-schema-dialect`` extension beside the
  schema (Ajv in draft-07 mode refuses to compile a schema naming the 2020-12
  meta-schema) and ``$id`` is dropped
  (every reference is already a pointer into the document);
* a ``$ref`` with sibling keywords, which draft-07 ignores, is wrapped in
  ``allOf``, which means the same in 2020-12;
* keywords new in 2019-09/2020-12 (``prefixItems``, ``unevaluatedProperties``
  ...) pass through: a draft-07 reader ignores them, so it accepts more,
  never less.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urldefrag

from router.schemas import BASE_URI

__all__ = ["DIALECT", "SCHEMA_FORMAT", "Bundle", "pointer"]

SCHEMA_FORMAT = "application/schema+json;version=draft-07"
DIALECT = "https://json-schema.org/draft/2020-12/schema"  # the registry's default

_VERSION_FILE = re.compile(r"^([^/]+)/v([1-9][0-9]*)\.json$")
_COMPONENT_KEY = re.compile(r"[^\w.\-]")  # AsyncAPI component keys: ^[\w\d\.\-_]+$
# Keywords whose value maps names to schemas (the names are data, not keywords).
_NAMED_SCHEMAS = frozenset({"properties", "patternProperties", "$defs", "definitions",
                            "dependentSchemas"})
# Keywords whose value is an instance, never a schema.
_INSTANCE_DATA = frozenset({"enum", "const", "default", "examples", "example"})


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def pointer(*parts: str) -> str:
    """A URI fragment with a JSON pointer (RFC 6901, ``~`` and ``/`` escaped) into the document."""
    return "#/" + "/".join(_escape(p) for p in parts)


def unique(name: str, taken: Iterable[str]) -> str:
    """``name``, or ``name-2``, ``name-3`` ... whichever is not taken yet."""
    used = set(taken)
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _anchor(document: Any, name: str) -> str:
    """The JSON pointer of the subschema declaring ``$anchor: name`` ("" if none does)."""
    def find(value: Any, path: str) -> str | None:
        if isinstance(value, dict):
            if value.get("$anchor") == name:
                return path
            items: Iterable[tuple[str, Any]] = value.items()
        elif isinstance(value, list):
            items = ((str(i), v) for i, v in enumerate(value))
        else:
            return None
        for key, item in items:
            found = find(item, f"{path}/{_escape(key)}")
            if found is not None:
                return found
        return None

    return find(document, "") or ""


class Bundle:
    """Every file of a registry, placed in one document, with its ``$ref``s rewritten."""

    def __init__(self, documents: Mapping[str, Any], versions: set[tuple[str, int]]) -> None:
        """``documents`` by path below ``schemas/``; ``versions`` the message schemas in it."""
        self.documents = documents
        self.homes: dict[str, str] = {}
        self.keys: dict[str, str] = {}  # a file that is no message schema -> its component key
        for rel in sorted(documents):
            found = _VERSION_FILE.match(rel)
            if found and (found.group(1), int(found.group(2))) in versions:
                key = f"{found.group(1)}.v{found.group(2)}"
                self.homes[rel] = pointer("components", "messages", key, "payload", "schema")
            else:
                key = unique(_COMPONENT_KEY.sub("_", rel.removesuffix(".json").replace("/", ".")),
                             self.keys.values())
                self.keys[rel] = key
                self.homes[rel] = pointer("components", "schemas", key, "schema")

    def payload(self, rel: str) -> dict[str, Any]:
        """The Multi Format Schema Object of the file ``rel``."""
        document = self.documents[rel]
        wrapped: dict[str, Any] = {"schemaFormat": SCHEMA_FORMAT}
        if isinstance(document, dict):
            wrapped["x-json-schema-dialect"] = document.get("$schema", DIALECT)
            document = {k: v for k, v in document.items() if k not in ("$schema", "$id")}
        wrapped["schema"] = self._rewrite(document, rel)
        return wrapped

    def shared(self) -> dict[str, Any]:
        """``components.schemas`` entries: the files that are not message schemas."""
        return {key: self.payload(rel) for rel, key in self.keys.items()}

    def _rewrite(self, value: Any, rel: str) -> Any:
        if isinstance(value, list):
            return [self._rewrite(item, rel) for item in value]
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                out[key] = self._target(item, rel)
            elif key in _NAMED_SCHEMAS and isinstance(item, dict):
                out[key] = {name: self._rewrite(sub, rel) for name, sub in item.items()}
            elif key in _INSTANCE_DATA:
                out[key] = item
            else:
                out[key] = self._rewrite(item, rel)
        if "$ref" in out and len(out) > 1:
            # draft-07 ignores the siblings of $ref; 2020-12 applies both: allOf says both.
            return {"allOf": [{"$ref": out.pop("$ref")}], **out}
        return out

    def _target(self, ref: str, rel: str) -> str:
        target, fragment = urldefrag(ref)
        if target.startswith(BASE_URI):
            target_rel = target.removeprefix(BASE_URI)
        elif target:
            target_rel = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        else:
            target_rel = rel
        home = self.homes[target_rel]  # the registry refuses references to anything else
        if fragment and not fragment.startswith("/"):
            fragment = _anchor(self.documents[target_rel], fragment)
        return home + fragment
