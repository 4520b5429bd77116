"""CloudEvents in the configuration: the formats a route may ask for, the topology's
``cloudevents`` section, and the form a copy is presented in (frozen values).

Reading events at the ingress is ``router.core.cloudevent``; presenting copies,
``router.core.eventform``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from router.config.fields import Fields, Shape
from router.config.source import Document
from router.errors import Problem

__all__ = ["FORMATS", "CloudEventsSpec", "Form", "Mode", "parse_cloudevents"]

FORMATS = ("as-is", "cloudevents-binary", "cloudevents-structured")


class Mode(StrEnum):
    """A CloudEvents content mode (CloudEvents 1.0 AMQP/RabbitMQ bindings)."""

    BINARY = "binary"
    STRUCTURED = "structured"


@dataclass(frozen=True)
class CloudEventsSpec:
    """The topology's ``cloudevents`` section."""

    source: str = "mcp-router"  # the source of events the router writes for plain messages
    types: Mapping[str, str] = field(default_factory=dict)  # CloudEvents type -> registry type

    def registry_type(self, event_type: str) -> str:
        return self.types.get(event_type, event_type)

    def event_type(self, registry_type: str) -> str:
        """The CloudEvents type written for a registry type (the first mapped to it)."""
        return next((ce for ce, name in self.types.items() if name == registry_type),
                    registry_type)


def parse_cloudevents(doc: Document, raw: Any, problems: list[Problem]) -> CloudEventsSpec:
    """``cloudevents: {source: ..., types: {com.shop.order.created: OrderCreated}}``."""
    if raw is None:
        return CloudEventsSpec()
    f = Fields.of(doc, ("cloudevents",), raw, problems,
                  shape=Shape({"source", "types"}, "cloudevents"))
    if not f.valid:
        return CloudEventsSpec()
    types = f.get("types", dict, {})
    for ce_type, name in types.items():
        if not isinstance(ce_type, str) or not isinstance(name, str) or not ce_type or not name:
            f.fail(("types", str(ce_type)), "cloudevents.types maps a CloudEvents type to a "
                                            "message type, both non-empty strings")
    source = f.name("source", required=False) or "mcp-router"
    return CloudEventsSpec(source, dict(types)) if f.valid else CloudEventsSpec()


@dataclass(frozen=True, slots=True)
class Form:
    """How one copy is presented: the CloudEvents mode and attributes (trace added later)."""

    mode: Mode
    attributes: Mapping[str, Any]
    stamp: bool = False  # no time known: stamp it when sent
