"""Retry decisions and the router's own retry headers (pure).

Two tiers, as ``router.policies`` declares them per message type:

1. in process: a few quick publish attempts with tenacity backoff;
2. on the broker: the copy is parked in a TTL queue, one per delay
   (``<ingress queue>.retry.<ms>ms``), which dead-letters it back into the
   ingress queue when the delay has passed.  No plugin is needed, and the
   retry survives a router or broker restart.

When the delays are used up the copy is dead-lettered: ``unroutable`` when
the last failure was a return (no queue bound), else ``retries_exhausted``.

A parked copy carries its state in ``x-mcp-*`` headers (attempts are counted
here, not from ``x-death``).  Those headers are trusted only when the message
comes back with the router's own broker-validated ``user_id``: a publisher
cannot forge a retry (RabbitMQ docs, "Validated User-ID").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from router.envelope import BROKER_BOOKKEEPING, Envelope, text_value
from router.errors import DeliveryFailed, Unroutable, Unsendable
from router.outcome import Reason
from router.policies import RetryPolicy

__all__ = [
    "GiveUp",
    "RetryLater",
    "RetryState",
    "next_step",
    "restore",
    "retry_headers",
    "retry_queue_name",
    "retry_state_of",
]

H_ATTEMPTS = "x-mcp-attempts"
H_RETRIES = "x-mcp-retries"
H_ROUTE = "x-mcp-retry-route"
H_EXCHANGE = "x-mcp-retry-exchange"
H_ROUTING_KEY = "x-mcp-retry-routing-key"
H_LAST_ERROR = "x-mcp-last-error"
H_ORIGINAL_EXCHANGE = "x-mcp-original-exchange"
H_ORIGINAL_ROUTING_KEY = "x-mcp-original-routing-key"
H_PUBLISHER = "x-mcp-publisher"
H_ORIGIN = "x-mcp-retry-origin"
H_BRANCH = "x-mcp-retry-branch"  # the route alternative the copy took (router.choose)


@dataclass(frozen=True, slots=True)
class RetryState:
    """A copy on its way through the broker tier."""

    route: str
    exchange: str
    routing_key: str
    attempts: int  # publish attempts made so far, both tiers
    retries: int  # broker-tier rounds done
    last_error: str
    original_exchange: str
    original_routing_key: str
    publisher: str | None
    origin: str | None = None  # traceparent of the first attempt's process span
    branch: str | None = None  # the copy went to this alternative of its route


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Park the copy for ``delay`` seconds, then route it again."""

    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No rounds left: dead-letter the copy with ``reason``."""

    reason: Reason


def next_step(policy: RetryPolicy, retries_done: int, error: DeliveryFailed) -> RetryLater | GiveUp:
    """After the in-process attempts of a round failed with ``error``: wait or give up."""
    if isinstance(error, Unsendable):  # it will never encode: no round can help
        return GiveUp(Reason.MALFORMED)
    if retries_done < len(policy.delays):
        return RetryLater(policy.delays[retries_done])
    return GiveUp(Reason.UNROUTABLE if isinstance(error, Unroutable) else Reason.RETRIES_EXHAUSTED)


def retry_queue_name(ingress_queue: str, delay: float) -> str:
    """The TTL queue for one delay, e.g. ``mcp.router.ingress.retry.10000ms``."""
    return f"{ingress_queue}.retry.{round(delay * 1000)}ms"


def retry_headers(state: RetryState) -> dict[str, Any]:
    """The headers that carry ``state`` through the retry queue."""
    headers: dict[str, Any] = {
        H_ROUTE: state.route,
        H_EXCHANGE: state.exchange,
        H_ROUTING_KEY: state.routing_key,
        H_ATTEMPTS: min(state.attempts, _MAX_COUNT),
        H_RETRIES: min(state.retries, _MAX_COUNT),
        H_LAST_ERROR: state.last_error[:1000],
        H_ORIGINAL_EXCHANGE: state.original_exchange,
        H_ORIGINAL_ROUTING_KEY: state.original_routing_key,
    }
    if state.publisher is not None:
        headers[H_PUBLISHER] = state.publisher
    if state.origin is not None:
        headers[H_ORIGIN] = state.origin
    if state.branch is not None:
        headers[H_BRANCH] = state.branch
    return headers



_MAX_COUNT = 2**31 - 1  # the counts are written as signed 32-bit AMQP integers


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) \
        and 0 <= value <= _MAX_COUNT else None


def retry_state_of(envelope: Envelope, router_user: str | None) -> RetryState | None:
    """The retry state of a copy the router parked itself, else None.

    Only a message whose ``user_id`` is the router's own (validated by the
    broker) is believed; anything else is a new message, whatever its headers.
    """
    if router_user is None or envelope.properties.user_id != router_user:
        return None
    h = envelope.properties.headers
    route, exchange, key = text_value(h.get(H_ROUTE)), text_value(h.get(H_EXCHANGE)), \
        text_value(h.get(H_ROUTING_KEY))
    attempts, retries = _count(h.get(H_ATTEMPTS)), _count(h.get(H_RETRIES))
    if route is None or exchange is None or key is None or attempts is None or retries is None:
        return None
    return RetryState(
        route=route, exchange=exchange, routing_key=key, attempts=attempts, retries=retries,
        last_error=text_value(h.get(H_LAST_ERROR)) or "",
        original_exchange=text_value(h.get(H_ORIGINAL_EXCHANGE)) or "",
        original_routing_key=text_value(h.get(H_ORIGINAL_ROUTING_KEY)) or "",
        publisher=text_value(h.get(H_PUBLISHER)),
        origin=text_value(h.get(H_ORIGIN)),
        branch=text_value(h.get(H_BRANCH)),
    )


def restore(envelope: Envelope, state: RetryState) -> Envelope:
    """The message as its publisher sent it: retry and broker headers gone, origin back."""
    own = set(retry_headers(state)) | {H_PUBLISHER, H_ORIGIN, H_BRANCH}
    headers = {k: v for k, v in envelope.properties.headers.items()
               if k not in own and k not in BROKER_BOOKKEEPING}
    properties = envelope.properties.with_headers(headers, user_id=state.publisher)
    return replace(envelope, properties=properties, exchange=state.original_exchange,
                   routing_key=state.original_routing_key)
