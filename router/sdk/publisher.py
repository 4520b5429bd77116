"""Publishing typed JSON messages to the ingress exchange, confirmed and traced."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.trace import SpanKind, Tracer, use_span

from router.broker.amqp import Connection, Exchange
from router.broker.servicelinks import (
    CONFIRM_TIMEOUT,
    connection_user,
    ingress_exchange,
    publish_persistent,
)
from router.config.keyring import Keyring
from router.config.schemas import SchemaRegistry
from router.core.decode import SCHEMA_VERSION_HEADER
from router.core.envelope import Properties
from router.core.outcome import DeadLetter, Decoded
from router.core.validate import validate
from router.errors import RouterError
from router.observe.conventions import publish_attributes, publish_name
from router.observe.tracing import PropagatingTracer, inject
from router.sdk.sealed import seal_fields

__all__ = ["CONFIRM_TIMEOUT", "InvalidMessage", "ServicePublisher", "connection_user"]


class InvalidMessage(RouterError, ValueError):
    """The body does not match its schema in the registry; nothing was published."""


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

    exchange: Exchange
    tracer: Tracer = field(default_factory=PropagatingTracer)
    app_id: str | None = None
    user_id: str | None = None  # the connection's user: the router authorises by it
    registry: SchemaRegistry | None = None
    keyring: Keyring | None = None  # with registry: sensitive fields are sealed before sending

    @classmethod
    async def open(  # noqa: PLR0913 - the public API: keyword options, as SPEC "SDK" lists them
        cls, connection: Connection, ingress: str = "mcp.ingress",
        tracer: Tracer | None = None, app_id: str | None = None,
        registry: SchemaRegistry | None = None, *,
        keyring: Keyring | None = None) -> ServicePublisher:
        """A publisher on a new confirming channel of ``connection``."""
        exchange = await ingress_exchange(connection, ingress)
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

    async def publish(  # noqa: PLR0913 - the public API: keyword options, as SPEC "SDK" lists them
        self, message_type: str, body: Any, *, version: int | None = None,
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
            properties = Properties(
                content_type="application/json", type=message_type, message_id=message_id,
                correlation_id=correlation_id, app_id=self.app_id, user_id=self.user_id,
                headers=all_headers)
            await publish_persistent(self.exchange, routing_key or message_type, raw,
                                     properties, confirm_timeout=CONFIRM_TIMEOUT)
        return message_id
