"""What a settling job writes about itself: producer spans, journal notes, log context.

One ``Notes`` per job of ``router.broker.settlerun``.  A copy's producer span
is opened when first needed and its dead letter's span once, across held
attempts; ``end`` closes both.  Nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span, SpanKind, Tracer, set_span_in_context

from router.config.configuration import Config
from router.core.envelope import Envelope
from router.core.outbound import dead_letter_routing_key
from router.core.outcome import Copy, DeadLetter
from router.observe.logs import context
from router.observe.metrics import UNKNOWN
from router.observe.spans import publish_attributes, publish_name
from router.observe.tracing import PropagatingTracer, span_trace_id
from router.runtime.journal import Journal

__all__ = ["Delivery", "Notes"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """The delivery being settled: what every job of it reads."""

    envelope: Envelope
    config: Config  # one configuration for the whole message
    parent: Span  # the delivery's process span
    overrides: Mapping[str, Any] = field(default_factory=dict)  # of the routed copies


class Notes:
    """The spans, journal records and log context of one job."""

    def __init__(self, tracer: Tracer, journal: Journal, envelope: Envelope, parent: Span,
                 config: Config) -> None:
        self.tracer, self.journal, self.envelope, self.parent, self.config = \
            tracer, journal, envelope, parent, config
        self.copy: Span | None = None  # the copy's producer span
        self.dead: Span | None = None  # the dead letter's producer span

    def copy_span(self, copy: Copy) -> Span:
        """The copy's producer span, opened on first use."""
        if self.copy is None:
            self.copy = self.producer(
                copy.exchange, copy.routing_key, route=copy.route,
                **({"mcp.router.branch": copy.branch} if copy.branch else {}))
        return self.copy

    def dead_letter_span(self, exchange: str, dead: DeadLetter, attempts: int) -> Span:
        """The dead letter's producer span, opened on its first attempt."""
        if self.dead is None:
            self.dead = self.producer(
                exchange, dead_letter_routing_key(dead), route=dead.route,
                **{"mcp.router.dead_letter.reason": dead.reason.value,
                   "mcp.router.attempts": attempts})
        return self.dead

    def producer(self, exchange: str, routing_key: str, **attributes: Any) -> Span:
        """A PRODUCER span under the process span, for one publish."""
        tracer, parent = self.tracer, self.parent
        if isinstance(tracer, PropagatingTracer):  # context only: skip the attributes
            return tracer.start_span("", set_span_in_context(parent))
        span_attributes = publish_attributes(
            exchange, routing_key, message_id=self.envelope.properties.message_id,
            body_size=len(self.envelope.body), route=attributes.pop("route", None))
        span_attributes.update(attributes)
        return tracer.start_span(publish_name(exchange), set_span_in_context(parent),
                                 SpanKind.PRODUCER, span_attributes)

    def end(self) -> None:
        """End the spans opened."""
        for span in (self.copy, self.dead):
            if span is not None:
                span.end()

    def note(self, event: str, **detail: Any) -> None:
        """A journal record for ``follow`` (when the journal keeps any)."""
        if self.journal.size:
            self.journal.record(self.envelope.properties.message_id, event, **detail)

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
