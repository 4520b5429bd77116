"""The JSON Schema registry as the router holds it: compiled schemas by message type (frozen).

``router.config.schema_loading`` builds it from ``schemas/``; the pipeline only
looks schemas up here, which is why this module imports neither the loader
nor the compatibility checker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from router.config.lineage import Lineage
from router.config.sensitive_marks import Marks
from router.evolution.inlined import BASE_URI

# BASE_URI is re-exported: schemas are named by it (mcp://schemas/...).
__all__ = ["BASE_URI", "FORMAT_KEYWORD", "SchemaRegistry", "SchemaVersion"]

# A schema's root may say {"x-mcp-format": "annotation"}: ``format`` is then only annotated.
FORMAT_KEYWORD = "x-mcp-format"


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One compiled version of a message type's schema."""

    message_type: str
    version: int
    file: str
    validator: Any  # jsonschema_rs.Validator: reentrant, compiled once
    marks: Marks = ()  # where its sensitive fields are (router.core.sensitive)


@dataclass(frozen=True)
class SchemaRegistry:
    """Compiled schemas by message type, versions ascending."""

    types: Mapping[str, tuple[SchemaVersion, ...]] = field(default_factory=dict)
    # The parsed JSON of every file that loaded, by path below schemas/ ("OrderCreated/v2.json",
    # "_common/money.json"): for tools that publish the schemas (router.tools.asyncapi).
    documents: Mapping[str, Any] = field(default_factory=dict)
    # How each type evolves (schemas/<Type>/evolution.yaml): mode and upcasters.
    lineages: Mapping[str, Lineage] = field(default_factory=dict)

    def lookup(self, message_type: str, version: int | None) -> SchemaVersion | str:
        """The schema for ``message_type`` at ``version`` (newest when None), or why not."""
        versions = self.types.get(message_type)
        if not versions:
            return f"no schema registered for message type {message_type!r}"
        if version is None:
            return versions[-1]
        for candidate in versions:
            if candidate.version == version:
                return candidate
        known = ", ".join(str(v.version) for v in versions)
        return f"{message_type} has no schema version {version} (known: {known})"

    def lineage(self, message_type: str) -> Lineage:
        """How ``message_type`` evolves: its versions, compatibility mode and upcasters."""
        found = self.lineages.get(message_type)
        if found is None:
            versions = tuple(v.version for v in self.types.get(message_type, ()))
            return Lineage(message_type, versions)
        return found

    def marks(self, message_type: str, version: int | None) -> Marks:
        """Where the sensitive fields of that version are (none for unknown types)."""
        found = self.lookup(message_type, version)
        return () if isinstance(found, str) else found.marks

    @property
    def sensitive(self) -> bool:
        """Whether any schema marks a sensitive field."""
        return any(v.marks for versions in self.types.values() for v in versions)

    def __contains__(self, message_type: str) -> bool:
        return message_type in self.types
