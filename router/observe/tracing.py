"""W3C trace context in AMQP headers, and the router's span per message.

Extraction tolerates what other AMQP clients send: a ``traceparent`` as
``bytes`` is decoded; an int, a byte array or garbage is ignored (the
OpenTelemetry default getter turns bytes into lists of ints and ``extract``
raises ``TypeError`` on ints, STYLE.md).  A message without usable context
starts a new trace.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from router.core.envelope import Envelope
from router.observe.conventions import process_attributes, process_name

__all__ = ["TRACE_HEADERS", "Consumed", "PropagatingTracer", "extract", "inject", "process_span",
           "span_trace_id", "trace_id_of"]

TRACE_HEADERS = ("traceparent", "tracestate")
_PROPAGATOR = TraceContextTextMapPropagator()


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """Reads AMQP header values as text whatever their wire type."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if isinstance(value, bytes | bytearray):
            try:
                value = bytes(value).decode("ascii")
            except UnicodeDecodeError:
                return None
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [k for k in carrier if isinstance(k, str)]


_GETTER = _HeaderGetter()


def extract(headers: Mapping[str, Any]) -> otel_context.Context:
    """The publisher's trace context, or an empty context when there is none usable."""
    try:
        return _PROPAGATOR.extract(headers, getter=_GETTER)
    except Exception:  # noqa: BLE001 -- a broken header must never stop a message
        return otel_context.Context()


def inject(span: trace.Span) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) naming ``span`` as the parent."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def span_trace_id(span: trace.Span) -> str | None:
    """The 32-hex trace id of ``span``, or None for an invalid (empty) context."""
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def trace_id_of(headers: Mapping[str, Any]) -> str | None:
    """The 32-hex trace id in a message's ``traceparent``, if it has a valid one."""
    return span_trace_id(trace.get_current_span(extract(headers)))


class PropagatingTracer(trace.Tracer):
    """Spans that only carry context: a fresh span id under the parent's trace.

    Used when no exporter is configured, so tracing costs about 2 µs a message
    instead of the SDK's 15 µs, yet every copy still gets a ``traceparent`` of
    its own whose trace id is the publisher's.  A message without context starts
    a new trace, marked sampled so that downstream services that do export show
    the flow from here on.
    """

    def start_span(self, name: str, context: otel_context.Context | None = None,
                   *args: Any, **kwargs: Any) -> trace.Span:
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            trace_id, flags, state = parent.trace_id, parent.trace_flags, parent.trace_state
        else:
            trace_id = random.getrandbits(128) or 1
            flags, state = trace.TraceFlags(trace.TraceFlags.SAMPLED), trace.TraceState()
        span_id = random.getrandbits(64) or 1
        return trace.NonRecordingSpan(trace.SpanContext(trace_id, span_id, is_remote=False,
                                                        trace_flags=flags, trace_state=state))

    # The base class types this with a private context-manager wrapper of the API.
    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]  # see the comment above
        self, name: str, context: otel_context.Context | None = None, *args: Any, **kwargs: Any
    ) -> Iterator[trace.Span]:
        with trace.use_span(self.start_span(name, context), end_on_exit=True) as span:
            yield span


@dataclass(frozen=True, slots=True)
class Consumed:
    """Where a delivery was consumed: its queue, its delivery tag, the broker node (host, port)."""

    queue: str
    delivery_tag: int | None
    server: tuple[str, int] | None


def process_span(tracer: trace.Tracer, envelope: Envelope, consumed: Consumed, *,
                 retry_origin: str | None, retries: int) -> trace.Span:
    """The CONSUMER span of one ingress delivery, continuing the publisher's trace.

    A copy back from the retry tier continues its parking span and links to the
    first attempt's process span (``retry_origin``, a ``traceparent``).
    """
    parent = extract(envelope.properties.headers)
    if isinstance(tracer, PropagatingTracer):  # context only: skip the attributes
        return tracer.start_span("", parent)
    links = []
    if retry_origin:
        origin = trace.get_current_span(extract({"traceparent": retry_origin}))
        if origin.get_span_context().is_valid:
            links.append(trace.Link(origin.get_span_context(),
                                    {"mcp.router.retry.round": retries}))
    return tracer.start_span(
        process_name(envelope), parent, trace.SpanKind.CONSUMER,
        process_attributes(envelope, queue=consumed.queue, delivery_tag=consumed.delivery_tag,
                           server=consumed.server),
        links)
