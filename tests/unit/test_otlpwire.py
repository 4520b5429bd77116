"""OTLP requests encoded from span records are the bytes the SDK's own encoder gives."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from router.observe.otlpwire import encode_prefix, encode_request
from router.observe.spanexport import Rebuilder
from router.observe.spanrecord import RecordingTracer
from router.observe.tracing import extract

PARENT = extract({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                  "tracestate": "vendor=a,other=b"})


def _records() -> list[tuple[Any, ...]]:
    records: list[tuple[Any, ...]] = []
    tracer = RecordingTracer(ALWAYS_ON, records.append)
    link = trace.Link(trace.get_current_span(PARENT).get_span_context(), {"round": 2})
    process = tracer.start_span("process mcp.ingress", PARENT, trace.SpanKind.CONSUMER,
                                {"s": "é ☃", "i": -5, "big": 2**62, "f": 1.25, "b": False,
                                 "seq": ["a", "b"], "ints": (1, 2)}, [link])
    publish = tracer.start_span("publish orders", trace.set_span_in_context(process),
                                trace.SpanKind.PRODUCER, {"mcp.router.route": "r"})
    publish.set_status(trace.Status(trace.StatusCode.ERROR, "returned"))
    publish.end()
    process.add_event("exception", {"exception.type": "schema_invalid"})
    process.add_event("settle")
    process.set_status(trace.StatusCode.OK)
    process.end()
    tracer.start_span("root").end()  # no parent
    many = tracer.start_span("many", PARENT, attributes={f"k{i}": i for i in range(130)})
    many.end()
    return records


def test_the_request_is_byte_for_byte_what_the_sdk_encodes() -> None:
    """Spans, kinds, parents, trace state, links, events, statuses, every value type,
    the resource, the scope and the 128-attribute limit, as the SDK encodes them."""
    records = _records()
    rebuilder = Rebuilder("mcp-router", "1.2.3")
    prefix = encode_prefix(dict(rebuilder.resource.attributes), "mcp-router", "1.2.3")

    ours = encode_request(prefix, records)
    sdk = encode_spans([rebuilder.span(r) for r in records]).SerializeToString()

    assert ours == sdk


def test_repeated_attributes_encode_the_same_each_time() -> None:
    """The cache of encoded attributes never changes what a request holds."""
    records = _records()
    prefix = encode_prefix({"service.name": "x"}, "mcp-router", "1")

    assert encode_request(prefix, records) == encode_request(prefix, records)
