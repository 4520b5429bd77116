"""Shadow copies: sent on the side, once, their fate counted and nothing else.

A shadow destination tries a new consumer on real traffic.  Whatever happens
to its copy must not touch the real copies, so a shadow copy

* is published in a task of its own, and the ingress delivery is acked without
  waiting for it (a slow or refusing shadow never delays the real copies);
* is tried once, on a connection of its own (``ShadowLink``, opened when first
  needed and again after it is lost): a publish to a missing exchange closes
  its channel, and aiormq can then lose the whole connection (RabbitMQ's 504
  CHANNEL_ERROR), which must not fail real copies in flight there; it is never
  retried, parked or dead-lettered;
* is counted in ``mcp_router_shadow_copies_total{route,branch,result}``:
  ``delivered``, ``failed`` (returned, nacked, timed out, or its version
  could not be had), ``dropped`` (too many shadow copies already in flight).

Shadow copies are therefore at-most-once, and a router killed with shadow
copies in flight loses those (never a real copy).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span, SpanKind, Tracer, set_span_in_context

from router.broker.amqp import CONNECT_TIMEOUT, HEARTBEAT
from router.broker.amqplink import Link, open_link
from router.broker.publish import ChannelPool, Channels
from router.core.envelope import Envelope
from router.core.outbound import copy_properties
from router.core.outcome import Copy
from router.errors import BrokerUnavailable, DeliveryFailed
from router.observe.conventions import publish_attributes, publish_name, record_failure
from router.observe.metrics import Metrics
from router.observe.tracing import PropagatingTracer, inject

__all__ = ["MAX_IN_FLIGHT", "ShadowLink", "ShadowSender"]

log = logging.getLogger("router.shadows")

MAX_IN_FLIGHT = 1000  # shadow publishes waiting for their confirms, at most
CHANNELS = 2  # of the shadow connection
RECONNECT_PAUSE = 1.0  # seconds without trying to connect after a failed attempt
CLOSE_TIMEOUT = 5.0


class ShadowLink:
    """The shadows' own publishing connection, opened on first use and after a loss."""

    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._url, self._clock = url, clock
        self._connection: Link | None = None
        self._pool: ChannelPool | None = None
        self._retry_at = 0.0
        self._lock = asyncio.Lock()

    async def __call__(self) -> Channels:
        """Channels to publish shadow copies on; ``BrokerUnavailable`` when there are none."""
        async with self._lock:
            if self._pool is not None and self._connection is not None and \
                    not self._connection.is_closed:
                return self._pool
            if self._clock() < self._retry_at:
                raise BrokerUnavailable("no connection for shadow copies (trying again soon)")
            await self.close()
            try:
                self._connection = await open_link(self._url, "mcp-router shadows",
                                                   heartbeat=HEARTBEAT, within=CONNECT_TIMEOUT)
            except BrokerUnavailable:
                self._retry_at = self._clock() + RECONNECT_PAUSE
                raise
            self._pool = ChannelPool(self._connection, CHANNELS)
            return self._pool

    async def close(self) -> None:
        """Close the connection, if open."""
        connection, self._connection, self._pool = self._connection, None, None
        if connection is not None:
            await connection.close(CLOSE_TIMEOUT)  # bounded: a dead peer may never answer


@dataclass
class ShadowSender:
    """Publishes shadow copies in the background and counts what became of them."""

    channels: Callable[[], Awaitable[Channels]]  # a ShadowLink: see the module docstring
    metrics: Metrics
    tracer: Tracer = field(default_factory=PropagatingTracer)
    limit: int = MAX_IN_FLIGHT
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def send(self, copies: list[Copy], dropped: tuple[tuple[Copy, str], ...],
             envelope: Envelope, overrides: Mapping[str, Any], parent: Span) -> None:
        """Start publishing ``copies``; count ``dropped`` (not to be had) as failed."""
        for copy, why in dropped:
            self.metrics.shadow(copy.route, copy.branch or "", "failed")
            log.info("shadow copy for %s not sent: %s", copy.branch, why)
        for copy in copies:
            if len(self._tasks) >= self.limit:
                self.metrics.shadow(copy.route, copy.branch or "", "dropped")
                continue
            task = asyncio.create_task(self._publish(copy, envelope, overrides, parent))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self, within: float) -> None:
        """Wait (at most ``within`` s) for the shadow copies in flight."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within)

    async def _publish(self, copy: Copy, envelope: Envelope, overrides: Mapping[str, Any],
                       parent: Span) -> None:
        span = self._span(copy, envelope, parent)
        try:
            properties = copy_properties(envelope, copy, inject(span), overrides)
            body = envelope.body if copy.body is None else copy.body
            channels = await self.channels()
            await channels.publish(copy.exchange, copy.routing_key, body, properties)
        except (DeliveryFailed, BrokerUnavailable) as exc:  # counted; quiet: maybe every one
            record_failure(span, type(exc).__name__, str(exc))
            self.metrics.shadow(copy.route, copy.branch or "", "failed")
            log.debug("shadow copy to %s not confirmed: %s", copy.branch, exc)
        except Exception:  # a shadow must never take anything down with it (logged)
            log.exception("shadow copy to %s failed unexpectedly", copy.branch)
            self.metrics.shadow(copy.route, copy.branch or "", "failed")
        else:
            self.metrics.shadow(copy.route, copy.branch or "", "delivered")
        finally:
            span.end()

    def _span(self, copy: Copy, envelope: Envelope, parent: Span) -> Span:
        context = set_span_in_context(parent)
        if isinstance(self.tracer, PropagatingTracer):  # context only: skip the attributes
            return self.tracer.start_span("", context)
        attributes = publish_attributes(copy.exchange, copy.routing_key,
                                        message_id=envelope.properties.message_id,
                                        body_size=len(envelope.body), route=copy.route)
        attributes["mcp.router.shadow"] = True
        return self.tracer.start_span(publish_name(copy.exchange), context, SpanKind.PRODUCER,
                                      attributes)
