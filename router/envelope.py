"""A message as the pure core sees it: bytes, routing facts and AMQP properties.

The shell (``router.amqp``) converts to and from the client library's types,
so nothing in the core depends on aio-pika or aiormq.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

__all__ = ["Envelope", "Headers", "Properties"]

Headers = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Properties:
    """The AMQP 0-9-1 basic properties, by their AMQP names (``type`` not ``message_type``)."""

    content_type: str | None = None
    content_encoding: str | None = None
    headers: Headers = field(default_factory=dict)
    delivery_mode: int | None = None
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    message_id: str | None = None
    timestamp: datetime | None = None
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None

    def with_headers(self, headers: Headers, **changes: Any) -> Properties:
        """A copy with ``headers`` replaced and any other property changed."""
        return replace(self, headers=headers, **changes)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One delivery: the body untouched, where it was published, and its properties."""

    body: bytes
    properties: Properties
    exchange: str = ""
    routing_key: str = ""
    redelivered: bool = False
