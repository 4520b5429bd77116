"""Spans shipped to the exporter process and exported there with the SDK's OTLP exporter,
to a real OTLP/HTTP receiver (no broker needed)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from router.observe.spanrecord import RecordingTracer
from router.observe.spanship import MAX_WAIT, STEADY, Restarts, SpanShipper
from router.observe.tracing import extract
from tests.integration.otlp import Receiver

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = extract({"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"})


@pytest.fixture
def shipper(receiver: Receiver) -> Iterator[SpanShipper]:
    s = SpanShipper({"service_name": "shipped", "version": "9", "endpoint": receiver.url,
                     "protocol": "http/protobuf", "sending": {}})
    yield s
    s.shutdown(10)


def _trace(tracer: RecordingTracer, count: int) -> None:
    for i in range(count):
        process = tracer.start_span(f"process q{i}", PARENT, trace.SpanKind.CONSUMER,
                                    {"messaging.system": "rabbitmq"})
        publish = tracer.start_span("publish orders", trace.set_span_in_context(process),
                                    trace.SpanKind.PRODUCER, {"mcp.router.route": "r"})
        publish.end()
        process.add_event("settle", {"messaging.operation.name": "ack"})
        process.end()


def test_every_span_arrives_decoded_as_it_was_made(shipper: SpanShipper,
                                                   receiver: Receiver) -> None:
    """Flush returns once the exporter process delivered every span: kinds, parents, events,
    attributes and the resource as the SDK would have sent them."""
    _trace(RecordingTracer(ALWAYS_ON, shipper.submit), 600)  # more than one batch

    assert shipper.flush(20)
    assert len(receiver.spans) == 1200
    processes = {s.span_id: s for s in receiver.spans if s.kind == "CONSUMER"}
    publishes = [s for s in receiver.spans if s.kind == "PRODUCER"]
    assert {s.trace_id for s in receiver.spans} == {TRACE_ID}
    assert {s.parent_id for s in processes.values()} == {"b7ad6b7169203331"}
    assert {p.parent_id for p in publishes} == set(processes)
    assert {s.service for s in receiver.spans} == {"shipped"}
    some = next(iter(processes.values()))
    assert some.events == [("settle", {"messaging.operation.name": "ack"})]
    assert some.attributes == {"messaging.system": "rabbitmq"}


def test_a_dead_exporter_process_is_started_again(shipper: SpanShipper,
                                                  receiver: Receiver) -> None:
    """Spans submitted after the exporter process died still arrive."""
    tracer = RecordingTracer(ALWAYS_ON, shipper.submit)
    _trace(tracer, 1)
    assert shipper.flush(20)
    assert shipper._process is not None
    os.kill(shipper._process.pid, signal.SIGKILL)
    shipper._process.wait(10)

    _trace(tracer, 1)

    assert shipper.flush(20)
    assert len(receiver.spans) == 4


def test_restarts_wait_longer_while_the_exporter_keeps_dying() -> None:
    """At once after a first death, then 1 s doubling to 30 s while each process dies young;
    a death that ends a steady run is a first one again."""
    restarts, started, waits = Restarts(), 0.0, []
    for _ in range(8):
        waits.append(restarts.ended(started, started + 0.5))
        started = restarts.not_before

    assert waits == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert restarts.ended(started, started + STEADY) == 0.0
    assert restarts.ended(started, started + STEADY + 1) == 0.0
    for _ in range(2_000):  # hours of an exporter that cannot start: the wait stays the cap
        assert restarts.ended(0.0, 1.0) <= MAX_WAIT
