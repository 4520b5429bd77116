"""Lean recording spans: the OpenTelemetry span API, recorded as plain tuples.

The SDK's spans cost about 15 µs each on the event loop (attribute cleaning,
locks, processor hooks), and its batch processor then encodes them to
protobuf in a thread that competes with routing for the one Python core.
``RecordingTracer`` keeps only what a span must do where it is made: sample
(with the SDK's own samplers), take ids and timestamps, collect attributes,
events and links.  A finished span becomes one ``SpanRecord`` tuple of plain
values, handed to a sink (``router.observe.spanship``) that ships it to the exporter
process, which encodes and sends it over OTLP (``router.observe.spanexport``).

Attribute values are kept when they are what OTLP carries (str, bool, int,
float, or a sequence of those); anything else is dropped, as the SDK drops it.
Limits (128 attributes, events and links) are applied by the SDK's
``BoundedAttributes`` in the exporter process.
"""

from __future__ import annotations

import contextlib
import random
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, NamedTuple

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.util import types

__all__ = ["RecordingSpan", "RecordingTracer", "SpanRecord", "plain_attributes"]

# (name, trace_id, span_id, flags, trace_state, parent_span_id (0: root), parent_is_remote,
#  kind, start_ns, end_ns, attributes, events [(name, ns, attributes)],
#  links [(trace_id, span_id, flags, attributes)], status_code, status_description)
SpanRecord = tuple[Any, ...]
Sink = Callable[[SpanRecord], None]

_PLAIN = (str, bool, int, float)


def _plain(value: Any) -> Any:
    """``value`` if OTLP can carry it (a sequence becomes a tuple), else None."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        items = tuple(value)
        if all(isinstance(v, _PLAIN) for v in items):
            return items
    return None


def plain_attributes(attributes: types.Attributes) -> dict[str, Any]:
    """The attributes OTLP can carry, as a fresh dict."""
    if not attributes:
        return {}
    kept = {}
    for key, value in attributes.items():
        clean = value if type(value) in _PLAIN else _plain(value)
        if clean is not None and isinstance(key, str) and key:
            kept[key] = clean
    return kept


class Started(NamedTuple):
    """What a span was started with, besides its name and context."""

    kind: trace.SpanKind
    attributes: dict[str, Any]
    links: list[tuple[int, int, int, dict[str, Any]]]  # trace id, span id, flags, attributes
    start_time: int | None  # ns since the epoch; None: now


class RecordingSpan(trace.Span):
    """A sampled span, recorded until ``end`` hands it to the sink."""

    __slots__ = ("_attributes", "_context", "_end", "_events", "_kind", "_links", "_name",
                 "_parent", "_sink", "_start", "_status")

    def __init__(self, name: str, context: trace.SpanContext, parent: trace.SpanContext | None,
                 started: Started, sink: Sink) -> None:
        self._name = name
        self._context = context
        self._parent = parent
        self._kind, self._attributes, self._links, start_time = started
        self._events: list[tuple[str, int, dict[str, Any]]] = []
        self._status: tuple[int, str | None] = (0, None)
        self._sink: Sink | None = sink
        self._start = start_time if start_time is not None else time.time_ns()
        self._end = 0

    def get_span_context(self) -> trace.SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._sink is not None

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        clean = value if type(value) in _PLAIN else _plain(value)
        if clean is not None and self._sink is not None:
            self._attributes[key] = clean

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if self._sink is not None:
            self._attributes.update(plain_attributes(attributes))

    def add_event(self, name: str, attributes: types.Attributes = None,
                  timestamp: int | None = None) -> None:
        if self._sink is not None:
            self._events.append((name, timestamp or time.time_ns(),
                                 plain_attributes(attributes)))

    def add_link(self, context: trace.SpanContext, attributes: types.Attributes = None) -> None:
        if self._sink is not None and context.is_valid:
            self._links.append((context.trace_id, context.span_id, int(context.trace_flags),
                                plain_attributes(attributes)))

    def update_name(self, name: str) -> None:
        if self._sink is not None:
            self._name = name

    def set_status(self, status: trace.Status | trace.StatusCode,
                   description: str | None = None) -> None:
        if self._sink is None:
            return
        if isinstance(status, trace.Status):
            code, description = status.status_code, status.description
        else:
            code = status
        # OK is final; an unset status never overrides (the SDK's rule)
        if self._status[0] != trace.StatusCode.OK.value and code is not trace.StatusCode.UNSET:
            self._status = (code.value, description if code is trace.StatusCode.ERROR else None)

    def record_exception(self, exception: BaseException, attributes: types.Attributes = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        module, name = type(exception).__module__, type(exception).__qualname__
        event: dict[str, Any] = {
            "exception.type": f"{module}.{name}" if module and module != "builtins" else name,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped)}
        event.update(plain_attributes(attributes))
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        sink, self._sink = self._sink, None
        if sink is None:
            return  # ended already
        ctx, parent = self._context, self._parent
        state = tuple(ctx.trace_state.items()) if ctx.trace_state else ()
        sink((self._name, ctx.trace_id, ctx.span_id, int(ctx.trace_flags), state,
              parent.span_id if parent is not None else 0,
              parent.is_remote if parent is not None else False, self._kind.value,
              self._start, end_time or time.time_ns(), self._attributes, self._events,
              self._links, self._status[0], self._status[1]))

    def __exit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None,
                 exc_tb: TracebackType | None) -> None:
        self.end()


class RecordingTracer(trace.Tracer):
    """Starts ``RecordingSpan``s for sampled traces, ``NonRecordingSpan``s otherwise."""

    def __init__(self, sampler: Sampler, sink: Sink) -> None:
        self._sampler = sampler
        self._sink = sink

    def start_span(  # noqa: PLR0913, PLR0917 - the OpenTelemetry Tracer API's signature
                   self, name: str, context: otel_context.Context | None = None,
                   kind: trace.SpanKind = trace.SpanKind.INTERNAL,
                   attributes: types.Attributes = None,
                   links: Sequence[trace.Link] | None = None, start_time: int | None = None,
                   record_exception: bool = True, set_status_on_exception: bool = True
                   ) -> trace.Span:
        current = trace.get_current_span(context).get_span_context()
        parent = current if current.is_valid else None
        trace_id = parent.trace_id if parent is not None else random.getrandbits(128) or 1
        sampled = self._sampler.should_sample(context, trace_id, name, kind, attributes, links)
        flags = trace.TraceFlags(trace.TraceFlags.SAMPLED
                                 if sampled.decision is Decision.RECORD_AND_SAMPLE else 0)
        span_context = trace.SpanContext(trace_id, random.getrandbits(64) or 1, False, flags,
                                         sampled.trace_state or
                                         (parent.trace_state if parent else None))
        if sampled.decision is not Decision.RECORD_AND_SAMPLE:
            return trace.NonRecordingSpan(span_context)
        recorded = plain_attributes(attributes)
        if sampled.attributes:
            recorded.update(plain_attributes(sampled.attributes))
        kept = [(link.context.trace_id, link.context.span_id, int(link.context.trace_flags),
                 plain_attributes(link.attributes)) for link in links or ()
                if link.context.is_valid]
        return RecordingSpan(name, span_context, parent,
                             Started(kind, recorded, kept, start_time), self._sink)

    # The base class types this with a private context-manager wrapper of the API.
    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]  # noqa: PLR0913, PLR0917 - the API's signature
        self, name: str, context: otel_context.Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL, attributes: types.Attributes = None,
        links: Sequence[trace.Link] | None = None, start_time: int | None = None,
        record_exception: bool = True, set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(span, end_on_exit=end_on_exit, record_exception=record_exception,
                            set_status_on_exception=set_status_on_exception) as current:
            yield current
