"""What a test's consumer received from one queue, as plain ``Delivery`` values.

An ``Inbox`` consumes one queue with a real consumer (a stream from its
first offset), acks each message on arrival, and keeps it as a ``Delivery``
until a test takes it: each delivery is returned once. Every arrival
notifies the condition the inbox was started with. Names in a ``Delivery``
are as written in the configuration, the test's prefix removed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router.broker.consume import tap
from router.core import headers as xmcp
from router.core.decode import parse_body

if TYPE_CHECKING:
    from router.broker.amqp import Wrapper
    from router.core.envelope import Envelope

__all__ = ["Delivery", "Inbox"]


@dataclass(frozen=True)
class Delivery:
    """One message as it arrived in a queue; names are as written in the configuration."""

    queue: str
    body: Any  # the decoded JSON, or the raw bytes when the body is not JSON
    raw: bytes
    headers: Mapping[str, Any]
    message_type: str | None
    message_id: str | None
    exchange: str
    routing_key: str

    @property
    def route(self) -> str | None:
        """``x-mcp-route``: the route that sent this copy."""
        return self._header(xmcp.ROUTE)

    @property
    def reason(self) -> str | None:
        """``x-mcp-reason`` of a dead letter."""
        return self._header(xmcp.REASON)

    @property
    def error(self) -> str | None:
        """``x-mcp-error`` of a dead letter."""
        return self._header(xmcp.ERROR)

    def _header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else str(value)


def _header_value(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return value


@dataclass
class Inbox:
    """What a consumer received from one queue and no test has taken yet."""

    queue: str
    channel: Wrapper
    waiting: list[Delivery] = field(default_factory=list)

    async def consume(self, real: str, *, prefix: str, stream: bool,
                      arrived: asyncio.Condition) -> None:
        """Consume queue ``real`` (the broker name of ``queue``) into ``waiting``."""
        async def on_message(envelope: Envelope) -> None:
            try:
                body: Any = parse_body(envelope.body)  # the router's one reading: exact ints
            except ValueError:
                body = envelope.body
            p = envelope.properties
            delivery = Delivery(
                self.queue, body, envelope.body,
                {k: _header_value(v) for k, v in p.headers.items()},
                p.type, p.message_id, envelope.exchange.removeprefix(f"{prefix}."),
                envelope.routing_key)
            async with arrived:
                self.waiting.append(delivery)
                arrived.notify_all()

        arguments: dict[str, Any] = {"x-stream-offset": "first"} if stream else {}
        await tap(self.channel, real, on_message, arguments=arguments)
