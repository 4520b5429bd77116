"""Publishing typed JSON messages to the ingress exchange, confirmed and traced."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from opentelemetry.trace import SpanKind, Tracer, use_span

from router.broker.amqp import translate
from router.config.schemas import SchemaRegistry
from router.core.decode import SCHEMA_VERSION_HEADER
from router.core.fieldcrypt import Keyring
from router.core.outcome import DeadLetter, Decoded
from router.core.validate import validate
from router.errors import RouterError
from router.observe.conventions import publish_attributes, publish_name
from router.observe.tracing import PropagatingTracer, inject
from router.sdk.sealed import seal_fields

__all__ = ["CONFIRM_TIMEOUT", "InvalidMessage", "ServicePublisher"]

CONFIRM_TIMEOUT = 30.0  # generous: a publish that timed out may still land, and is retried


class InvalidMessage(RouterError, ValueError):
    """The body does not match its schema in the registry; nothing was published."""


def connection_user(connection: AbstractConnection) -> str:
    """The broker user ``connection`` authenticated as (aio-pika's default: guest)."""
    url = getattr(connection, "url", None)
    return getattr(url, "user", None) or "guest"


@dataclass
class ServicePublisher:
    """Publishes to the ingress: persistent, ``mandatory``, confirmed, with trace context.

    ``publish`` returns once the broker confirmed the message; it raises
    ``router.errors.Unroutable`` when the broker returned it (nothing bound to
    the exchange), ``TransientFailure`` on a nack, timeout or lost channel
    (publishing again is safe: the router and ``router.sdk`` services
    deduplicate by ``message_id``), and ``InvalidMessage`` before publishing
    when a ``registry`` is given and the body fails its schema.
    """

    exchange: AbstractExchange
    tracer: Tracer = field(default_factory=PropagatingTracer)
    app_id: str | None = None
    user_id: str | None = None  # the connection's user: the router authorises by it
    registry: SchemaRegistry | None = None
    keyring: Keyring | None = None  # with registry: sensitive fields are sealed before sending

    @classmethod
    async def open(cls, connection: AbstractConnection, ingress: str = "mcp.ingress",
                   tracer: Tracer | None = None, app_id: str | None = None,
                   registry: SchemaRegistry | None = None, *,
                   keyring: Keyring | None = None) -> ServicePublisher:
        """A publisher on a new confirming channel of ``connection``."""
        # on_return_raises: without it a returned mandatory message "succeeds" (STYLE.md).
        channel: AbstractChannel = await connection.channel(publisher_confirms=True,
                                                            on_return_raises=True)
        exchange = await channel.get_exchange(ingress, ensure=False)
        return cls(exchange, tracer or PropagatingTracer(), app_id,
                   connection_user(connection), registry, keyring)

    def check(self, message_type: str, body: Any, version: int | None) -> None:
        """Raise ``InvalidMessage`` if the registry refuses ``body``; no registry, no check."""
        if self.registry is None:
            return
        checked = validate(Decoded(message_type, version, body), self.registry)
        if isinstance(checked, DeadLetter):
            raise InvalidMessage(f"{checked.reason.value}: {checked.error}")

    def _sealed(self, message_type: str, body: Any, version: int | None) -> Any:
        """The body with its sensitive fields sealed (client-side encryption), when this
        publisher holds a keyring; the plain value never leaves the process."""
        if self.keyring is None or self.registry is None:
            return body
        marks = self.registry.marks(message_type, version)
        return seal_fields(body, marks, self.keyring, os.urandom) if marks else body

    async def publish(self, message_type: str, body: Any, *, version: int | None = None,
                      message_id: str | None = None, headers: Mapping[str, Any] | None = None,
                      correlation_id: str | None = None,
                      routing_key: str | None = None) -> str:
        """Publish one message; returns its ``message_id`` once the broker confirmed it."""
        self.check(message_type, body, version)
        message_id = message_id or str(uuid.uuid4())
        raw = orjson.dumps(self._sealed(message_type, body, version))
        span = self.tracer.start_span(
            publish_name(self.exchange.name), kind=SpanKind.PRODUCER,
            attributes=publish_attributes(self.exchange.name, message_type,
                                          message_id=message_id, body_size=len(raw)))
        with use_span(span, end_on_exit=True):
            all_headers = {**(headers or {}), **inject(span)}
            if version is not None:
                all_headers[SCHEMA_VERSION_HEADER] = version
            message = aio_pika.Message(
                raw, content_type="application/json", type=message_type,
                message_id=message_id, correlation_id=correlation_id, app_id=self.app_id,
                user_id=self.user_id, timestamp=datetime.now(UTC),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers=all_headers)
            try:
                await self.exchange.publish(message, routing_key=routing_key or message_type,
                                            mandatory=True, timeout=CONFIRM_TIMEOUT)
            except Exception as exc:
                raise translate(exc) from exc
        return message_id
