"""``check``: every route's ``when`` type-checked against its message type's schemas.

The type of ``message`` is what every schema version the route can receive
declares (``router.config.celtypes``): all versions of every type its
``message_type`` matches, or up to ``version`` for a route that asks for one
(a newer message is dead-lettered before routing matters).  A field counts
as known if any of those versions declares it, and an expression is refused
only when it cannot type-check for any of them (``router.config.celcheck``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

from router.config.celcheck import check
from router.config.celparse import Node, Unsupported, parse
from router.config.celtypes import DYN, Type, merge, of_schema
from router.config.schemas import SchemaRegistry
from router.config.source import Document
from router.config.topology import RouteSpec
from router.errors import Problem
from router.evolution.inlined import inline

__all__ = ["check_when_types", "message_type"]


def message_type(registry: SchemaRegistry, pattern: str, up_to: int | None = None) -> Type:
    """The CEL type of bodies of the types ``pattern`` matches (versions up to ``up_to``)."""
    docs: Mapping[str, Document] = {rel: Document(f"schemas/{rel}", data)
                                    for rel, data in registry.documents.items()}
    merged: Type | None = None
    for name, versions in registry.types.items():
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        for version in versions:
            rel = f"{name}/v{version.version}.json"
            if (up_to is not None and version.version > up_to) or rel not in docs:
                continue
            kind = of_schema(inline(rel, docs).schema, name)
            merged = kind if merged is None else merge(merged, kind)
    return DYN if merged is None else merged


def _tree(text: str) -> Node | None:
    try:
        return parse(text)
    except (Unsupported, RecursionError):
        return None  # valid CEL (it compiled) that this checker does not know: trusted


def check_when_types(specs: tuple[RouteSpec, ...], registry: SchemaRegistry,
                     file: str) -> list[Problem]:
    """A problem at the route's line for every ``when`` that does not type-check."""
    problems: list[Problem] = []
    for spec in specs:
        if spec.when is None:
            continue
        tree = _tree(spec.when)
        if tree is None:
            continue
        why = check(tree, message_type(registry, spec.message_type, spec.version))
        if why is not None:
            problems.append(Problem(file, f"route {spec.name!r}: when {spec.when!r}: {why}",
                                    spec.line))
    return problems
