"""A message as the pure core sees it: bytes, routing facts and AMQP properties.

The shell (``router.broker.amqp``) converts to and from the client library's types,
so nothing in the core depends on aio-pika or aiormq.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

__all__ = ["BROKER_BOOKKEEPING", "Envelope", "Headers", "Properties", "text_value"]

Headers = Mapping[str, Any]

# Headers the broker writes when it dead-letters or redelivers a message.
BROKER_BOOKKEEPING = frozenset({
    "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
    "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason", "x-delivery-count",
})


def text_value(value: Any) -> str | None:
    """A header or short-string value as text (pamqp gives bytes for non-UTF-8), else None."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


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
    """One delivery: the body untouched, where it was published, and its properties.

    ``defects`` says why properties did not decode or cannot be sent on (then
    ``properties`` is what of them can); ``raw_headers`` is the header table as
    it was on the wire when it did not decode.  Such a delivery is ``malformed``.
    """

    body: bytes
    properties: Properties
    exchange: str = ""
    routing_key: str = ""
    redelivered: bool = False
    defects: tuple[str, ...] = ()
    raw_headers: bytes | None = None
    # Set by the router for the stages after decoding, never by the shell:
    event: Mapping[str, Any] | None = None  # CloudEvents attributes (router.core.cloudevent)
    dead_body: bytes | None = None  # what a dead letter carries (core.sealing: fields sealed)
