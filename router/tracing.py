"""W3C trace context in AMQP headers, and the router's span per message.

Extraction tolerates what other AMQP clients send: a ``traceparent`` as
``bytes`` is decoded; an int, a byte array or garbage is ignored (the
OpenTelemetry default getter turns bytes into lists of ints and ``extract``
raises ``TypeError`` on ints, STYLE.md).  A message without usable context
starts a new trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["TRACE_HEADERS", "extract", "inject", "make_tracer", "trace_id_of"]

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


def trace_id_of(headers: Mapping[str, Any]) -> str | None:
    """The 32-hex trace id in a message's ``traceparent``, if it has a valid one."""
    span = trace.get_current_span(extract(headers))
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def make_tracer(service_name: str = "mcp-router") -> trace.Tracer:
    """A tracer whose spans get real ids (so copies carry a fresh ``traceparent``)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    return provider.get_tracer("router")
