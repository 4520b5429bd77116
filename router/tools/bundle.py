"""The schema registry bundled into one document: every file placed, every ``$ref`` rewritten.

A registry's files refer to each other by relative path
(``../_common/money.json#/$defs/amount``); a bundled document cannot. ``Bundle``
gives each file a *home*, a JSON pointer inside the AsyncAPI document (a
message schema at ``#/components/messages/<Type>.v<N>/payload/schema``, any
other file at ``#/components/schemas/<key>/schema``), and rewrites every
``$ref`` (relative, ``mcp://schemas/...``, same-file ``#/...`` and
``#anchor``) into a pointer to the target's home, so the meaning stays the
same and nothing outside the document is named.

References resolve as the registry resolves them (``router.evolution.refs``): against
the base URI each ``$id`` sets, so an absolute URI naming an embedded
resource, or another file's ``$id``, becomes a pointer too; only a reference
to a standard meta-schema keeps its URI, which every JSON Schema tool ships.
``$id`` and ``$schema`` are dropped (the schema is no longer a resource of its
own: every reference is a pointer into the document).

Each schema is wrapped in an AsyncAPI Multi Format Schema Object whose
``schemaFormat`` names its dialect: ``application/schema+json;version=2020-12``
for the registry's default, ``...;version=draft-07`` for a file whose
``$schema`` says draft-07, and so on.  In a draft-04 to draft-07 schema a
``$ref`` with sibling keywords, which those drafts ignore, is wrapped in
``allOf``, which means what the router applies.  A ``$dynamicRef`` becomes a
pointer to the resource it names first, so it no longer reaches a schema that
extends it dynamically (recursive extension is rare in message schemas).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urldefrag

from router.config.schemas import BASE_URI
from router.config.source import Path_
from router.evolution.refs import join, walk

__all__ = ["DIALECT", "SCHEMA_FORMAT", "Bundle", "pointer", "schema_format"]

SCHEMA_FORMAT = "application/schema+json;version=2020-12"  # the registry's default dialect
DIALECT = "https://json-schema.org/draft/2020-12/schema"
_VERSIONS = {
    DIALECT: "2020-12", "https://json-schema.org/draft/2019-09/schema": "2019-09",
    "http://json-schema.org/draft-07/schema": "draft-07",
    "http://json-schema.org/draft-06/schema": "draft-06",
    "http://json-schema.org/draft-04/schema": "draft-04",
}
_SIBLINGS_IGNORED = frozenset({"draft-07", "draft-06", "draft-04"})  # of a $ref

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


def _version(document: Any) -> str:
    dialect = document.get("$schema") if isinstance(document, dict) else None
    return _VERSIONS.get(urldefrag(dialect)[0] if isinstance(dialect, str) else DIALECT,
                         "2020-12")  # a custom meta-schema: the router's default dialect


def schema_format(document: Any) -> str:
    """The AsyncAPI ``schemaFormat`` of a registry file: JSON Schema in its dialect."""
    return f"application/schema+json;version={_version(document)}"


def _at(document: Any, path: Path_) -> Any:
    for part in path:
        document = document[part]
    return document


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
        # Every resource (a file, an embedded "$id") by URI: its file and where in it.
        self.resources: dict[str, tuple[str, Path_]] = {
            uri: (rel, path) for rel in sorted(documents)
            for uri, path in walk(documents[rel], BASE_URI + rel).identified.items()}
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
        version = _version(document)
        return {"schemaFormat": schema_format(document),
                "schema": self._rewrite(document, BASE_URI + rel,
                                        old=version in _SIBLINGS_IGNORED)}

    def shared(self) -> dict[str, Any]:
        """``components.schemas`` entries: the files that are not message schemas."""
        return {key: self.payload(rel) for rel, key in self.keys.items()}

    def _rewrite(self, value: Any, base: str, *, old: bool) -> Any:
        if isinstance(value, list):
            return [self._rewrite(item, base, old=old) for item in value]
        if not isinstance(value, dict):
            return value
        if isinstance(value.get("$id"), str):
            base = urldefrag(join(base, value["$id"]))[0]
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in ("$id", "$schema"):
                continue
            if key in ("$ref", "$dynamicRef") and isinstance(item, str):
                out[key] = self._target(item, base)
            elif key in _NAMED_SCHEMAS and isinstance(item, dict):
                out[key] = {name: self._rewrite(sub, base, old=old) for name, sub in item.items()}
            elif key in _INSTANCE_DATA:
                out[key] = item
            else:
                out[key] = self._rewrite(item, base, old=old)
        if old and "$ref" in out and len(out) > 1:
            # draft-07 ignores the siblings of $ref; the router applies both: allOf says both.
            return {"allOf": [{"$ref": out.pop("$ref")}], **out}
        return out

    def _target(self, ref: str, base: str) -> str:
        resource, fragment = urldefrag(join(base, ref))
        found = self.resources.get(resource)
        if found is None:  # a standard meta-schema (the registry refuses anything else)
            return join(base, ref)
        rel, path = found
        home = self.homes[rel] + "".join(f"/{_escape(str(part))}" for part in path)
        if fragment and not fragment.startswith("/"):
            fragment = _anchor(_at(self.documents[rel], path), fragment)
        return home + fragment
