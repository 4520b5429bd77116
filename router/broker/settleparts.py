"""What settling one delivery is made of: the settler's parts and one job's state.

``router.broker.settle.Settler`` is these parts plus the fan-out of an outcome
into jobs; ``router.broker.settlerun.Run`` is a job's state plus its step loop;
``router.broker.setaside`` parks and dead-letters with a job's state.  Kept
apart so that each of those imports this module and none imports another back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry.trace import Span, SpanKind, Tracer, set_span_in_context

from router.broker.publish import Publisher
from router.broker.shadows import ShadowSender
from router.config.configuration import Config
from router.config.unconsumed_rules import UnconsumedAction, UnconsumedRule
from router.core.breakers import Breaker, BreakerBoard
from router.core.deliverysteps import CopyJob, Job, NoConsumer
from router.core.envelope import Envelope, Properties
from router.core.journalnotes import Note
from router.core.outbound import dead_letter_routing_key
from router.core.outcome import Dead, route_of
from router.core.sealing import Sealer
from router.observe.conventions import publish_attributes, publish_name
from router.observe.journal import Journal
from router.observe.logs import context
from router.observe.metrics import UNKNOWN, Metrics
from router.observe.tracing import PropagatingTracer, span_trace_id

__all__ = ["HOLD_LIMIT", "Delivery", "RunState", "SettleParts"]

HOLD_LIMIT = 300.0  # seconds a delivery may wait for the broker to accept publishes


@dataclass(frozen=True, slots=True)
class Delivery:
    """The delivery being settled: what every job of it reads."""

    envelope: Envelope
    config: Config  # one configuration for the whole message
    parent: Span  # the delivery's process span
    overrides: Mapping[str, Any] = field(default_factory=dict)  # of the routed copies


@dataclass
class SettleParts:
    """What settling uses: the publisher, counts, spans, clocks, breakers and holds."""

    publisher: Publisher
    metrics: Metrics
    router_user: str = "guest"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    hold_limit: float = HOLD_LIMIT
    tracer: Tracer = field(default_factory=PropagatingTracer)
    breakers: BreakerBoard = field(default_factory=BreakerBoard)
    monotonic: Callable[[], float] = time.monotonic
    # The ``unconsumed`` policy rule for a copy of a route no live service consumes.
    holds: Callable[[str, str, Config], UnconsumedRule | None] = lambda _r, _t, _c: None
    journal: Journal = field(default_factory=lambda: Journal(0))  # what follow shows
    shadows: ShadowSender | None = None  # None: shadow copies are not sent
    sealer: Callable[[Config], Sealer | None] = lambda _c: None  # data keys: parking seals


class RunState:
    """One job's parts on the broker: its breaker, its producer spans, its notes.

    ``router.broker.settlerun.Run`` adds the step loop; the actions of
    ``router.broker.setaside`` use only these parts."""

    def __init__(self, settler: SettleParts, job: Job, delivery: Delivery) -> None:
        self.s, self.job = settler, job
        self.envelope, self.config, self.parent = \
            delivery.envelope, delivery.config, delivery.parent
        self.overrides = delivery.overrides
        self.breaker: Breaker | None = None
        self.no_consumer: NoConsumer | None = None
        self.copy: Span | None = None  # the copy's producer span
        self.dead: Span | None = None  # the dead letter's producer span
        self._properties: Properties | None = None
        if isinstance(job, CopyJob):
            copy, now = job.copy, settler.monotonic()
            board = settler.breakers.of(self.config.policies.circuit_breakers,
                                        self.config.topology, now)
            self.breaker = board.of(copy.exchange, copy.routing_key, now) if board.rules \
                else None
            rule = settler.holds(copy.route, job.message_type, self.config)
            if rule is not None:
                self.no_consumer = NoConsumer(rule.action == UnconsumedAction.DEAD_LETTER,
                                              rule.wait,
                                              rule.where)

    def copy_span(self) -> Span:
        """The copy's producer span, opened on first use."""
        if self.copy is None:
            job = self.job
            assert isinstance(job, CopyJob)  # noqa: S101 - only copies have a copy span
            copy = job.copy
            self.copy = self.producer(
                copy.exchange, copy.routing_key, route=copy.route,
                **({"mcp.router.branch": copy.branch} if copy.branch else {}))
        return self.copy

    def dead_letter_span(self, exchange: str, dead: Dead, attempts: int) -> Span:
        """The dead letter's producer span, opened on its first attempt."""
        if self.dead is None:
            self.dead = self.producer(
                exchange, dead_letter_routing_key(dead), route=route_of(dead),
                **{"mcp.router.dead_letter.reason": dead.reason.value,
                   "mcp.router.attempts": attempts})
        return self.dead

    def producer(self, exchange: str, routing_key: str, **attributes: Any) -> Span:
        """A PRODUCER span under the process span, for one publish."""
        tracer, parent = self.s.tracer, self.parent
        if isinstance(tracer, PropagatingTracer):  # context only: skip the attributes
            return tracer.start_span("", set_span_in_context(parent))
        span_attributes = publish_attributes(
            exchange, routing_key, message_id=self.envelope.properties.message_id,
            body_size=len(self.envelope.body), route=attributes.pop("route", None))
        span_attributes.update(attributes)
        return tracer.start_span(publish_name(exchange), set_span_in_context(parent),
                                 SpanKind.PRODUCER, span_attributes)

    def note(self, event: Note, **detail: Any) -> None:
        """A journal record for ``follow`` (when the journal keeps any)."""
        if self.s.journal.size:
            self.s.journal.record(self.envelope.properties.message_id, event, **detail)

    def type_label(self, message_type: str | None) -> str:
        """The ``type`` label of a count: a registered type, else ``unknown``."""
        known = message_type is not None and message_type in self.config.registry
        return message_type if known and message_type is not None else UNKNOWN

    def about(self, message_type: str | None = None, **more: Any) -> dict[str, Any]:
        """The log context of the message: id, type, trace id and whatever else is given."""
        envelope = self.envelope
        return context(envelope.properties.message_id,
                       message_type or envelope.properties.type,
                       trace_id=span_trace_id(self.parent), **more)
