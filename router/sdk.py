"""A small SDK for services on mcp-router: publish to the ingress, handle routed messages.

Both sides carry W3C trace context in the message headers, so a message can be
followed producer → router → consumer as one trace::

    publisher = await ServicePublisher.open(connection, "mcp.ingress", tracer)
    await publisher.publish("OrderCreated", {"order_id": ...}, version=2)

    service = Service("billing", tracer)

    @service.handler("OrderCreated")
    async def on_created(body, message): ...

    await service.consume(queue)

A handler that raises has its message requeued once and rejected the second
time (to the queue's own dead-letter exchange, if it has one).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from opentelemetry.trace import SpanKind, Tracer, use_span

from router.envelope import Envelope, Properties
from router.spans import (
    process_attributes,
    process_name,
    publish_attributes,
    publish_name,
    record_failure,
)
from router.tracing import PropagatingTracer, extract, inject

__all__ = ["Handler", "Service", "ServicePublisher"]

log = logging.getLogger("router.sdk")

Handler = Callable[[Any, AbstractIncomingMessage], Awaitable[None]]


@dataclass
class ServicePublisher:
    """Publishes typed JSON messages to the ingress exchange, confirmed and traced."""

    exchange: AbstractExchange
    tracer: Tracer = field(default_factory=PropagatingTracer)
    app_id: str | None = None
    user_id: str | None = None  # the connection's user: the router authorises by it

    @classmethod
    async def open(cls, connection: AbstractConnection, ingress: str,
                   tracer: Tracer | None = None, app_id: str | None = None) -> ServicePublisher:
        channel: AbstractChannel = await connection.channel(publisher_confirms=True,
                                                            on_return_raises=True)
        exchange = await channel.get_exchange(ingress, ensure=False)
        user = getattr(getattr(connection, "url", None), "user", None) or "guest"
        return cls(exchange, tracer or PropagatingTracer(), app_id, user)

    async def publish(self, message_type: str, body: Any, *, version: int | None = None,
                      message_id: str | None = None,
                      headers: dict[str, Any] | None = None) -> str:
        """Publish one message; returns its message id once the broker confirmed it."""
        message_id = message_id or str(uuid.uuid4())
        raw = orjson.dumps(body)
        span = self.tracer.start_span(
            publish_name(self.exchange.name), kind=SpanKind.PRODUCER,
            attributes=publish_attributes(self.exchange.name, message_type,
                                          message_id=message_id, body_size=len(raw)))
        with use_span(span, end_on_exit=True):
            all_headers = {**(headers or {}), **inject(span)}
            if version is not None:
                all_headers["x-schema-version"] = version
            await self.exchange.publish(
                aio_pika.Message(raw, content_type="application/json", type=message_type,
                                 message_id=message_id, app_id=self.app_id,
                                 user_id=self.user_id,
                                 timestamp=datetime.now(UTC),
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                 headers=all_headers),
                routing_key=message_type, mandatory=True)
        return message_id


@dataclass
class Service:
    """Handlers per message type over a queue, each delivery a CONSUMER span."""

    name: str
    tracer: Tracer = field(default_factory=PropagatingTracer)
    handlers: dict[str, Handler] = field(default_factory=dict)

    def handler(self, message_type: str) -> Callable[[Handler], Handler]:
        """Register the decorated coroutine for ``message_type``."""
        def register(function: Handler) -> Handler:
            self.handlers[message_type] = function
            return function
        return register

    async def consume(self, queue: AbstractQueue) -> str:
        """Start consuming ``queue``; returns the consumer tag."""
        async def on_message(message: AbstractIncomingMessage) -> None:
            await self._deliver(queue.name, message)

        return await queue.consume(on_message)

    async def _deliver(self, queue: str, message: AbstractIncomingMessage) -> None:
        headers = dict(message.headers or {})
        envelope = Envelope(message.body, Properties(
            headers=headers, message_id=message.message_id, type=message.type,
            correlation_id=message.correlation_id), message.exchange or "",
            message.routing_key or "")
        span = self.tracer.start_span(
            process_name(envelope), extract(headers), SpanKind.CONSUMER,
            process_attributes(envelope, queue=queue, delivery_tag=message.delivery_tag,
                               server=None))
        with use_span(span, end_on_exit=True, record_exception=False):
            handler = self.handlers.get(message.type or message.routing_key or "")
            try:
                if handler is None:
                    raise LookupError(f"{self.name} has no handler for {message.type!r}")
                await handler(orjson.loads(message.body), message)
            except Exception as exc:  # noqa: BLE001 -- settled below, reported on the span
                record_failure(span, type(exc).__name__, str(exc))
                log.warning("%s: handler failed for %s: %s", self.name, message.message_id, exc)
                await message.nack(requeue=not message.redelivered)
                return
            await message.ack()
