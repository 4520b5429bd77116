"""OpenTelemetry attributes for the router's spans, as the messaging conventions spell them.

Semantic conventions for messaging and RabbitMQ (development status, v1.2x):
``messaging.destination.name`` is the *exchange* (empty for the default
exchange), the routing key goes in ``messaging.rabbitmq.destination.routing_key``;
span names are ``{messaging.operation.name} {destination}``.  Attributes the
conventions do not define carry the ``mcp.router.`` prefix.

The router's spans per ingress delivery:

* ``process <exchange>`` (CONSUMER), child of the publisher's context;
  validation failures are events on it, settlement is recorded on it;
* ``publish <exchange>`` (PRODUCER) per copy, dead letter and parked retry,
  child of the process span; the message it publishes carries *its* context.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import Span, Status, StatusCode

from router.core.envelope import Envelope

__all__ = [
    "SYSTEM",
    "process_attributes",
    "process_name",
    "publish_attributes",
    "publish_name",
    "record_failure",
    "record_settlement",
]

SYSTEM = "rabbitmq"


def process_name(envelope: Envelope) -> str:
    return f"process {envelope.exchange or 'amq.default'}"


def publish_name(exchange: str) -> str:
    return f"publish {exchange or 'amq.default'}"


def process_attributes(envelope: Envelope, *, queue: str, delivery_tag: int | None,
                       server: tuple[str, int] | None) -> dict[str, Any]:
    """Attributes of the CONSUMER span of one ingress delivery."""
    p = envelope.properties
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": envelope.exchange,
        "messaging.destination.subscription.name": queue,
        "messaging.message.body.size": len(envelope.body),
    }
    if envelope.routing_key:
        attributes["messaging.rabbitmq.destination.routing_key"] = envelope.routing_key
    if delivery_tag is not None:
        attributes["messaging.rabbitmq.message.delivery_tag"] = delivery_tag
    if p.message_id:
        attributes["messaging.message.id"] = p.message_id
    if p.correlation_id:
        attributes["messaging.message.conversation_id"] = p.correlation_id
    if p.type:
        attributes["mcp.router.message_type"] = p.type
    if server is not None:
        attributes["server.address"], attributes["server.port"] = server
    return attributes


def publish_attributes(exchange: str, routing_key: str, *, message_id: str | None,
                       body_size: int, route: str | None = None) -> dict[str, Any]:
    """Attributes of a PRODUCER span of one copy, dead letter or retry."""
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": exchange,
        "messaging.message.body.size": body_size,
    }
    if routing_key:
        attributes["messaging.rabbitmq.destination.routing_key"] = routing_key
    if message_id:
        attributes["messaging.message.id"] = message_id
    if route is not None:
        attributes["mcp.router.route"] = route
    return attributes


def record_failure(span: Span, error_type: str, detail: str) -> None:
    """Mark a span failed with the conventions' ``error.type`` and a description."""
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, detail[:500]))


def record_settlement(span: Span, *, acked: bool, outcome: str) -> None:
    """How the delivery was settled: ``ack`` or ``nack`` (requeue), and what happened."""
    span.add_event("settle", {"messaging.operation.type": "settle",
                              "messaging.operation.name": "ack" if acked else "nack",
                              "mcp.router.outcome": outcome})
