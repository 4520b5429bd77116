"""What the pipeline decides for one message: values, settled in one place.

``Outcome = Forward | DeadLetter | DeadCopy | Delay``; ``router.broker.settle`` matches on it with
``assert_never`` so the type checker proves every case is handled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from router.config.cloudevents_spec import Form
from router.core.ladder import RetryState
from router.core.reasons import Reason

# Reason is re-exported: it lives in router.core.reasons so that router.core.ladder needs
# no import of this module.
__all__ = ["Copy", "Dead", "DeadCopy", "DeadLetter", "Decoded", "Delay", "Forward", "Outcome",
           "Reason", "route_of"]


@dataclass(frozen=True, slots=True)
class Decoded:
    """A message whose body parsed and whose type and schema version are known."""

    message_type: str
    version: int | None
    body: Any


@dataclass(frozen=True, slots=True)
class Copy:
    """One routed copy: which route produced it and where it goes.

    ``version`` is the schema version the route asks for (None: the message as
    published); ``body`` the copy's own body when it was upcast to that version
    (None: the published bytes, untouched).

    A copy to one of a route's alternatives names its ``branch`` and the
    branches ``skipped`` on the way with why (``router.core.choose``); a ``shadow``
    copy is sent on the side, its fate never touching the real copies.
    """

    route: str
    exchange: str
    routing_key: str
    version: int | None = None
    body: bytes | None = None
    branch: str | None = None
    shadow: bool = False
    skipped: tuple[tuple[str, str], ...] = ()
    keyless: bool = False  # the route's key could not be read: chosen by message id
    form: Form | None = None  # presented as a CloudEvent (router.core.eventform); None: as it came

    @property
    def target(self) -> tuple[str, str, str]:
        """Route, exchange and routing key: which copy this is, whatever its body."""
        return self.route, self.exchange, self.routing_key


@dataclass(frozen=True, slots=True)
class Forward:
    """Publish every copy; the ingress message is acked once all are confirmed.

    ``retry`` is set when this is a copy coming back from the broker's retry
    tier: its attempts so far count toward the policy.
    """

    message: Decoded
    copies: tuple[Copy, ...]
    retry: RetryState | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)  # priority, expiration
    dropped: tuple[tuple[Copy, str], ...] = ()  # shadow copies not sent, and why
    unfit: tuple[DeadCopy, ...] = ()  # copies that cannot be had (their version): their own


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Send the whole message to the dead-letter exchange with a reason, then ack it."""

    reason: Reason
    error: str
    message_type: str | None = None


@dataclass(frozen=True, slots=True)
class DeadCopy:
    """Send one copy to the dead-letter exchange instead of its destination: it could not
    be had or delivered; the message's other copies go on.  Its dead letter names the
    route and where the copy was going (``x-mcp-route``, ``x-mcp-destination-*``)."""

    reason: Reason
    error: str
    message_type: str | None
    destination: Copy  # the copy that could not be delivered

    @property
    def route(self) -> str:
        """The route that sent the copy ("" when a service does not know it)."""
        return self.destination.route


Dead = DeadLetter | DeadCopy
"""What a dead letter is sent for: the whole message, or one copy of it."""


def route_of(dead: Dead) -> str | None:
    """The route a dead letter names: its copy's, or None for the whole message."""
    return dead.route if isinstance(dead, DeadCopy) else None


@dataclass(frozen=True, slots=True)
class Delay:
    """Park the whole message on the broker for ``delay`` seconds; it is then routed anew
    (rate-limit shaping: nothing dropped)."""

    delay: float
    reason: str
    message_type: str


Outcome = Forward | DeadLetter | DeadCopy | Delay
