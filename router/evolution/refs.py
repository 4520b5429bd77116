"""Where a schema's references point, read the way JSON Schema 2020-12 resolves them (pure).

A ``$ref`` or ``$dynamicRef`` is a URI reference resolved against the base URI
in force where it is written: the file's own URI (``mcp://schemas/<path>``),
changed by every ``$id`` on the way down (an embedded resource).  ``walk``
gives each reference (and each ``$schema``) with the absolute URI it names,
and every resource a document identifies (its own URI and each ``$id``), so
the registry can tell a reference to a known resource (a file, an embedded
``$id``, a ``urn:uuid:`` id, a standard meta-schema) from one that would need
the network.

The standard meta-schemas (drafts 3 to 2020-12 and the 2019-09 and 2020-12
vocabularies) come from the ``jsonschema-specifications`` package installed
with python-jsonschema: shipped locally, never fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import jsonschema_specifications

__all__ = ["META_SCHEMAS", "Path_", "Reference", "Resources", "join", "walk"]

# A JSON path (keys and list indexes): the same shape as ``router.config.source.Path_``.
Path_ = tuple[str | int, ...]

# Values of these keywords are data, not schemas: a "$ref" or "$id" inside is no keyword.
_DATA = frozenset({"enum", "const", "examples", "default"})
# Keywords whose value maps names to schemas: its keys are names, not keywords.
_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions",
                   "dependentSchemas"})


def _meta_schemas() -> dict[str, Any]:
    registry = jsonschema_specifications.REGISTRY
    return {urldefrag(uri)[0]: registry.contents(uri) for uri in registry}


#: The standard meta-schemas by URI (without the empty fragment some drafts write).
META_SCHEMAS: Mapping[str, Any] = _meta_schemas()


def join(base: str, ref: str) -> str:
    """``ref`` resolved against ``base`` (RFC 3986), for any scheme (``mcp:``, ``urn:``)."""
    if urlsplit(ref).scheme:
        return ref
    if not ref or ref.startswith("#"):
        return urldefrag(base)[0] + ref
    scheme = urlsplit(base).scheme
    if not scheme:
        return urljoin(base, ref)
    # urljoin resolves relative paths only for the schemes it knows: lend it "http".
    joined = urljoin("http" + base[len(scheme):], ref)
    return scheme + joined[len("http"):]


@dataclass(frozen=True, slots=True)
class Reference:
    """One ``$ref``, ``$dynamicRef`` or ``$schema``: where, as written, and what it names."""

    path: Path_  # JSON path of the keyword in its document
    ref: str
    target: str  # absolute URI, fragment kept
    base: str  # the base URI it was resolved against

    @property
    def resource(self) -> str:
        """The resource the target names (the URI without its fragment)."""
        return urldefrag(self.target)[0]


@dataclass
class Resources:
    """Every reference of a document and every resource URI it identifies."""

    references: list[Reference] = field(default_factory=list)
    identified: dict[str, Path_] = field(default_factory=dict)  # resource URI -> where

    def visit(self, value: Any, base: str, path: Path_) -> None:
        """Walk ``value``, a schema (or a part of one) whose base URI is ``base``."""
        stack: list[tuple[Any, str, Path_, bool]] = [(value, base, path, False)]
        while stack:
            node, base, path, names = stack.pop()
            if isinstance(node, list):
                stack.extend((item, base, (*path, i), False) for i, item in enumerate(node))
                continue
            if not isinstance(node, dict):
                continue
            if names:  # {"name": schema, ...}
                stack.extend((item, base, (*path, key), False) for key, item in node.items())
                continue
            ident = node.get("$id")
            if isinstance(ident, str):
                base = urldefrag(join(base, ident))[0]
                self.identified.setdefault(base, path)
            for keyword in ("$ref", "$dynamicRef", "$schema"):
                ref = node.get(keyword)
                if isinstance(ref, str):
                    self.references.append(Reference((*path, keyword), ref, join(base, ref),
                                                     base))
            stack.extend((item, base, (*path, key), key in _MAPS)
                         for key, item in node.items() if key not in _DATA)


def walk(data: Any, uri: str) -> Resources:
    """The references in ``data`` (retrieved as ``uri``) and the resources it identifies."""
    found = Resources(identified={urldefrag(uri)[0]: ()})
    found.visit(data, urldefrag(uri)[0], ())
    return found
