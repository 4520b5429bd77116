"""The retry ladder of a failing handler, and what is published for it (pure).

Same two tiers as the router's publish retries (``router.core.ladder``), with the
same ``RetryPolicy`` values:

1. in process: ``policy.attempts`` calls with tenacity backoff, the delivery
   held unacked (keep it short: RabbitMQ's consumer timeout and the prefetch
   window both count against it);
2. on the broker: the message is parked in ``<queue>.retry.<ms>ms``, a TTL
   quorum queue that dead-letters it back into the service's queue after the
   delay (``Topology.retry_queue``), one round per ``policy.delays`` entry;

then the router's dead-letter exchange, reason ``handler_failed``, with the
router's ``x-mcp-*`` headers, so ``mcp-router dlq`` lists, shows and replays
it.  ``PermanentError`` skips both tiers.

A parked message carries its count in ``x-mcp-attempts`` / ``x-mcp-retries``
and is published with the service's own broker user as ``user_id``: the
count is believed only from a message whose broker-validated ``user_id`` is
the service's (RabbitMQ docs, "Validated User-ID"); routed copies carry no
``user_id``, so a publisher cannot skip the ladder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from router.config.policies import RetryPolicy
from router.config.retry_policy import retry_queue_name
from router.core import headers as xmcp
from router.core.envelope import BROKER_BOOKKEEPING, Envelope, Properties, text_value
from router.core.ladder import GiveUp, RetryLater, count_of, next_round
from router.core.outbound import dead_letter_properties, dead_letter_routing_key
from router.core.outcome import Copy, DeadCopy, Reason

__all__ = [
    "HandlerFailure",
    "HandlerState",
    "Home",
    "Stamp",
    "dead_letter",
    "next_step",
    "park",
    "state_of",
]


@dataclass(frozen=True, slots=True)
class HandlerState:
    """Where a delivery stands on the ladder before this round's attempts."""

    attempts: int = 0  # handler calls made in earlier rounds
    retries: int = 0  # broker rounds done
    original_exchange: str = ""  # where the delivery first came from
    original_routing_key: str = ""


def state_of(envelope: Envelope, own_user: str | None) -> HandlerState:
    """The ladder state of a delivery: fresh unless the service parked it itself."""
    fresh = HandlerState(0, 0, envelope.exchange, envelope.routing_key)
    if own_user is None or envelope.properties.user_id != own_user:
        return fresh
    h = envelope.properties.headers
    attempts, retries = count_of(h.get(xmcp.ATTEMPTS)), count_of(h.get(xmcp.RETRIES))
    if attempts is None or retries is None:
        return fresh
    return HandlerState(attempts, retries,
                        text_value(h.get(xmcp.ORIGINAL_EXCHANGE)) or envelope.exchange,
                        text_value(h.get(xmcp.ORIGINAL_ROUTING_KEY)) or envelope.routing_key)


@dataclass(frozen=True, slots=True)
class Home:
    """Where the service consumes: its name, its queue, and the broker user it connects as."""

    service: str
    queue: str
    user: str


@dataclass(frozen=True, slots=True)
class HandlerFailure:
    """Why the delivery is given up, and after how many handler calls in all."""

    reason: Reason
    error: str
    message_type: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class Stamp:
    """When a dead letter is written, and the trace context it carries."""

    now: datetime
    trace: Mapping[str, str]


def next_step(policy: RetryPolicy, state: HandlerState) -> RetryLater | GiveUp:
    """After this round's in-process attempts failed: park for the next delay, or give up.

    The router's ladder (``router.core.ladder.next_round``), with the SDK's reason."""
    return next_round(policy, state.retries) or GiveUp(Reason.HANDLER_FAILED)


def _own_headers() -> frozenset[str]:
    return frozenset({xmcp.ATTEMPTS, xmcp.RETRIES, xmcp.LAST_ERROR, xmcp.ORIGINAL_EXCHANGE,
                      xmcp.ORIGINAL_ROUTING_KEY})


def park(envelope: Envelope, state: HandlerState, home: Home, delay: float,
         error: str) -> tuple[str, Properties]:
    """Routing key (on the default exchange) and properties that park the message.

    ``state`` is written as given: the caller counts the calls and the round
    (or not, for a message only set aside).  The broker's ``x-death``
    bookkeeping of earlier rounds is dropped (the count lives in our headers).
    """
    headers = {k: v for k, v in envelope.properties.headers.items()
               if k not in BROKER_BOOKKEEPING and k not in _own_headers()}
    headers.update({
        xmcp.ATTEMPTS: state.attempts,
        xmcp.RETRIES: state.retries,
        xmcp.LAST_ERROR: error[:1000],
        xmcp.ORIGINAL_EXCHANGE: state.original_exchange,
        xmcp.ORIGINAL_ROUTING_KEY: state.original_routing_key,
    })
    return retry_queue_name(home.queue, delay), \
        envelope.properties.with_headers(headers, user_id=home.user)


def dead_letter(envelope: Envelope, state: HandlerState, home: Home, failure: HandlerFailure,
                stamp: Stamp) -> tuple[str, Properties]:
    """Routing key and properties of the dead letter, as the router writes them.

    ``x-mcp-original-*`` say where the service received the message from;
    ``x-mcp-destination-exchange`` is the default exchange ``""`` and
    ``x-mcp-destination-routing-key`` the service's queue, so
    ``mcp-router dlq replay --to ''`` puts it straight back into that queue.
    """
    route = text_value(envelope.properties.headers.get(xmcp.ROUTE))
    publisher = text_value(envelope.properties.headers.get(xmcp.PUBLISHER))
    dead = DeadCopy(failure.reason, failure.error, failure.message_type,
                    Copy(route or "", "", home.queue))
    # The broker's x-death of our own retry rounds is noise here: x-mcp-attempts counts them.
    kept = {k: v for k, v in envelope.properties.headers.items() if k not in BROKER_BOOKKEEPING}
    received = replace(envelope, exchange=state.original_exchange,
                       routing_key=state.original_routing_key,
                       properties=envelope.properties.with_headers(kept, user_id=None))
    properties = dead_letter_properties(received, dead, attempts=failure.attempts,
                                        now=stamp.now, trace=stamp.trace)
    headers = dict(properties.headers)
    headers[xmcp.SERVICE] = home.service
    if publisher is not None:
        headers[xmcp.PUBLISHER] = publisher
    return dead_letter_routing_key(dead), properties.with_headers(headers)
