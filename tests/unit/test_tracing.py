"""W3C trace context read from AMQP headers, whatever their wire type."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace

from router.observe.tracing import PropagatingTracer, extract, inject, trace_id_of

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    "value", [TRACEPARENT, TRACEPARENT.encode(), bytearray(TRACEPARENT.encode())],
)
def test_traceparent_as_text_or_bytes_is_extracted(value: Any) -> None:
    """A traceparent sent as str, bytes or bytearray gives the publisher's span as parent."""
    context = extract({"traceparent": value})

    parent = trace.get_current_span(context).get_span_context()
    assert parent.is_valid
    assert format(parent.trace_id, "032x") == TRACE_ID
    assert format(parent.span_id, "016x") == "b7ad6b7169203331"


@pytest.mark.parametrize(
    "value",
    [7, [TRACEPARENT], list(TRACEPARENT.encode()), "garbage", b"\xff\xfe", None, 1.5,
     {"a": 1}, "00-00000000000000000000000000000000-b7ad6b7169203331-01"],
)
def test_unusable_traceparent_is_ignored(value: Any) -> None:
    """An int, list, garbage or all-zero traceparent gives an empty context, not an error."""
    context = extract({"traceparent": value})

    assert not trace.get_current_span(context).get_span_context().is_valid


def test_non_string_header_keys_are_ignored() -> None:
    """Headers with non-string keys do not break extraction."""
    headers: dict[Any, Any] = {1: "x", "traceparent": TRACEPARENT}

    assert trace_id_of(headers) == TRACE_ID


def test_trace_id_of_returns_the_trace_id() -> None:
    """``trace_id_of`` gives the 32-hex trace id of a message's traceparent."""
    assert trace_id_of({"traceparent": TRACEPARENT.encode()}) == TRACE_ID


def test_trace_id_of_without_context_is_none() -> None:
    """A message without a traceparent has no trace id."""
    assert trace_id_of({}) is None
    assert trace_id_of({"traceparent": 42}) is None


def test_inject_names_the_span_as_parent() -> None:
    """``inject`` writes a traceparent whose parent is the given span, in the same trace."""
    tracer = PropagatingTracer()
    span = tracer.start_span("process", context=extract({"traceparent": TRACEPARENT}))

    carrier = inject(span)
    span.end()

    version, trace_id, span_id, _flags = carrier["traceparent"].split("-")
    assert (version, trace_id) == ("00", TRACE_ID)
    assert span_id == format(span.get_span_context().span_id, "016x")
    assert span_id != "b7ad6b7169203331"
