"""The messages the router sends: routed copies and dead letters (pure).

Inbound headers in the router's namespace (``x-mcp-*``) and the broker's
``x-delivery-count`` are never passed on: the router writes its own.  The
publisher's broker-validated ``user_id`` is moved to ``x-mcp-publisher``,
because RabbitMQ refuses a ``user_id`` that differs from the publishing
connection's user (RabbitMQ docs, "Validated User-ID").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from router.core import headers as xmcp
from router.core.decode import SCHEMA_VERSION_HEADER
from router.core.envelope import Envelope, Properties
from router.core.ladder import Comeback, retry_headers
from router.core.outcome import Copy, Dead, DeadCopy

__all__ = [
    "MAX_ERROR_LENGTH",
    "copy_properties",
    "dead_letter_properties",
    "dead_letter_routing_key",
    "retry_properties",
]

MAX_ERROR_LENGTH = 2000
MAX_COUNT = 2**31 - 1  # counts the router writes fit a signed 32-bit AMQP integer
# The header table of a malformed message as it was on the wire, when it did not decode.

_TRACE_HEADERS = ("traceparent", "tracestate")
_BROKER_HEADERS = ("x-delivery-count",)
# Informational router headers that travel with the message (``dlq replay`` counts).
_CARRIED = frozenset({xmcp.REPLAYS})


def _passed_on(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in headers.items()
        if (not xmcp.is_ours(k) or k in _CARRIED)
        and k not in _TRACE_HEADERS and k not in _BROKER_HEADERS
    }


def _base(envelope: Envelope, trace: Mapping[str, str]) -> dict[str, Any]:
    headers = _passed_on(envelope.properties.headers)
    headers.update(trace)
    if envelope.properties.user_id:
        headers[xmcp.PUBLISHER] = envelope.properties.user_id
    return headers


def copy_properties(envelope: Envelope, copy: Copy, trace: Mapping[str, str],
                    overrides: Mapping[str, Any] | None = None) -> Properties:
    """Properties of a routed copy: the original's, minus ``user_id``, plus route and trace,
    with the policy's ``overrides`` (``priority``, ``expiration``); ``x-schema-version``
    is the copy's when its route asks for a version."""
    headers = _base(envelope, trace)
    headers[xmcp.ROUTE] = copy.route
    if copy.branch is not None:  # one of the route's alternatives, or a shadow
        headers[xmcp.BRANCH] = copy.branch
    if copy.shadow:
        headers[xmcp.SHADOW] = True
    if copy.version is not None:  # the version its route asks for, upcast or as published
        headers[SCHEMA_VERSION_HEADER] = copy.version
    return envelope.properties.with_headers(headers, user_id=None, **(overrides or {}))


def dead_letter_properties(
    envelope: Envelope,
    dead: Dead,
    *,
    attempts: int,
    now: datetime,
    trace: Mapping[str, str],
) -> Properties:
    """Properties of a dead letter, with every ``x-mcp-*`` header of the SPEC."""
    headers = _base(envelope, trace)
    error = dead.error
    if len(error) > MAX_ERROR_LENGTH:
        error = error[:MAX_ERROR_LENGTH] + "..."
    headers.update({
        xmcp.REASON: dead.reason.value,
        xmcp.ERROR: error,
        xmcp.ORIGINAL_EXCHANGE: envelope.exchange,
        xmcp.ORIGINAL_ROUTING_KEY: envelope.routing_key,
        xmcp.ATTEMPTS: min(max(attempts, 0), MAX_COUNT),
        xmcp.DEAD_LETTERED_AT: now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    })
    if envelope.raw_headers is not None:
        headers[xmcp.RAW_HEADERS] = bytearray(envelope.raw_headers)
    if isinstance(dead, DeadCopy):
        if dead.route:
            headers[xmcp.ROUTE] = dead.route
        headers[xmcp.DESTINATION_EXCHANGE] = dead.destination.exchange
        headers[xmcp.DESTINATION_ROUTING_KEY] = dead.destination.routing_key
    return envelope.properties.with_headers(headers, user_id=None)


def retry_properties(envelope: Envelope, state: Comeback, trace: Mapping[str, str],
                     router_user: str) -> Properties:
    """Properties of a copy parked in a retry queue.

    ``user_id`` is the router's own, so that RabbitMQ vouches for the retry
    headers when the copy comes back (``router.core.ladder.retry_state_of``).
    """
    headers = _passed_on(envelope.properties.headers)
    headers.update(trace)
    headers.update(retry_headers(state))
    return envelope.properties.with_headers(headers, user_id=router_user)


def dead_letter_routing_key(dead: Dead) -> str:
    """``<reason>.<MessageType>``, at most 255 bytes (the AMQP shortstr limit)."""
    key = f"{dead.reason.value}.{dead.message_type or 'unknown'}"
    raw = key.encode("utf-8")[:255]
    return raw.decode("utf-8", errors="ignore")
