"""Retry decisions and the router's own retry headers (pure).

Two tiers, as ``router.config.policies`` declares them per message type:

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

from router.config.retry_policy import RetryPolicy, retry_queue_name
from router.core import headers as xmcp
from router.core.envelope import BROKER_BOOKKEEPING, Envelope, text_value
from router.core.reasons import Reason
from router.errors import DeliveryFailed, Unroutable, Unsendable

__all__ = [
    "MAX_COUNT",
    "Comeback",
    "GiveUp",
    "RetryLater",
    "RetryState",
    "WholeParked",
    "backoff_after",
    "count_of",
    "next_round",
    "next_step",
    "restore",
    "retry_headers",
    "retry_queue_name",
    "retry_state_of",
]

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
class WholeParked:
    """A whole message set aside by rate-limit shaping: it is routed anew when it comes
    back, with no copy pinned and no attempts counted.

    On the wire it carries the retry headers with empty route, exchange and
    routing key and zero counts (SPEC: "Retries"), as it always has."""

    last_error: str
    original_exchange: str
    original_routing_key: str
    publisher: str | None

    @property
    def retries(self) -> int:
        """No broker-tier round is counted for a shaped message."""
        return 0

    @property
    def origin(self) -> str | None:
        """A shaped message starts its trace afresh when it comes back."""
        return None


Comeback = RetryState | WholeParked
"""What the router parked itself: one copy on the ladder, or a whole shaped message."""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Park the copy for ``delay`` seconds, then route it again."""

    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No rounds left: dead-letter the copy with ``reason``."""

    reason: Reason


def next_round(policy: RetryPolicy, retries_done: int) -> RetryLater | None:
    """The broker-tier round after ``retries_done`` rounds, or None once they are spent.

    The one ladder: the router's copies and the SDK's handlers both climb it."""
    if retries_done < len(policy.delays):
        return RetryLater(policy.delays[retries_done])
    return None


def backoff_after(waits: list[float], calls_made: int) -> float:
    """The in-process sleep after ``calls_made`` failed calls (``RetryPolicy.backoff_delays``
    gives ``waits``): the n-th wait after the n-th call, the last one repeated."""
    return float(waits[min(calls_made, len(waits)) - 1]) if waits and calls_made > 0 else 0.0


def next_step(policy: RetryPolicy, retries_done: int, error: DeliveryFailed) -> RetryLater | GiveUp:
    """After the in-process attempts of a round failed with ``error``: wait or give up."""
    if isinstance(error, Unsendable):  # it will never encode: no round can help
        return GiveUp(Reason.MALFORMED)
    later = next_round(policy, retries_done)
    if later is not None:
        return later
    return GiveUp(Reason.UNROUTABLE if isinstance(error, Unroutable) else Reason.RETRIES_EXHAUSTED)


def retry_headers(state: Comeback) -> dict[str, Any]:
    """The headers that carry ``state`` through the retry queue."""
    if isinstance(state, WholeParked):
        state = RetryState("", "", "", 0, 0, state.last_error, state.original_exchange,
                           state.original_routing_key, state.publisher)
    headers: dict[str, Any] = {
        xmcp.RETRY_ROUTE: state.route,
        xmcp.RETRY_EXCHANGE: state.exchange,
        xmcp.RETRY_ROUTING_KEY: state.routing_key,
        xmcp.ATTEMPTS: min(state.attempts, MAX_COUNT),
        xmcp.RETRIES: min(state.retries, MAX_COUNT),
        xmcp.LAST_ERROR: state.last_error[:1000],
        xmcp.ORIGINAL_EXCHANGE: state.original_exchange,
        xmcp.ORIGINAL_ROUTING_KEY: state.original_routing_key,
    }
    if state.publisher is not None:
        headers[xmcp.PUBLISHER] = state.publisher
    if state.origin is not None:
        headers[xmcp.RETRY_ORIGIN] = state.origin
    if state.branch is not None:
        headers[xmcp.RETRY_BRANCH] = state.branch
    return headers


MAX_COUNT = 2**31 - 1  # the counts are written as signed 32-bit AMQP integers


def count_of(value: Any) -> int | None:
    """A count header as written by the router or the SDK, or None when it is not one."""
    return value if isinstance(value, int) and not isinstance(value, bool) \
        and 0 <= value <= MAX_COUNT else None


def retry_state_of(envelope: Envelope, router_user: str | None) -> Comeback | None:
    """The retry state of a copy (or shaped message) the router parked itself, else None.

    Only a message whose ``user_id`` is the router's own (validated by the
    broker) is believed; anything else is a new message, whatever its headers.
    """
    if router_user is None or envelope.properties.user_id != router_user:
        return None
    h = envelope.properties.headers
    route = text_value(h.get(xmcp.RETRY_ROUTE))
    exchange = text_value(h.get(xmcp.RETRY_EXCHANGE))
    key = text_value(h.get(xmcp.RETRY_ROUTING_KEY))
    attempts, retries = count_of(h.get(xmcp.ATTEMPTS)), count_of(h.get(xmcp.RETRIES))
    if route is None or exchange is None or key is None or attempts is None or retries is None:
        return None
    if not route:  # a whole message parked by shaping
        return WholeParked(text_value(h.get(xmcp.LAST_ERROR)) or "",
                           text_value(h.get(xmcp.ORIGINAL_EXCHANGE)) or "",
                           text_value(h.get(xmcp.ORIGINAL_ROUTING_KEY)) or "",
                           text_value(h.get(xmcp.PUBLISHER)))
    return RetryState(
        route=route, exchange=exchange, routing_key=key, attempts=attempts, retries=retries,
        last_error=text_value(h.get(xmcp.LAST_ERROR)) or "",
        original_exchange=text_value(h.get(xmcp.ORIGINAL_EXCHANGE)) or "",
        original_routing_key=text_value(h.get(xmcp.ORIGINAL_ROUTING_KEY)) or "",
        publisher=text_value(h.get(xmcp.PUBLISHER)),
        origin=text_value(h.get(xmcp.RETRY_ORIGIN)),
        branch=text_value(h.get(xmcp.RETRY_BRANCH)),
    )


def restore(envelope: Envelope, state: Comeback) -> Envelope:
    """The message as its publisher sent it: retry and broker headers gone, origin back."""
    own = set(retry_headers(state)) | {xmcp.PUBLISHER, xmcp.RETRY_ORIGIN, xmcp.RETRY_BRANCH}
    headers = {k: v for k, v in envelope.properties.headers.items()
               if k not in own and k not in BROKER_BOOKKEEPING}
    properties = envelope.properties.with_headers(headers, user_id=state.publisher)
    return replace(envelope, properties=properties, exchange=state.original_exchange,
                   routing_key=state.original_routing_key)
