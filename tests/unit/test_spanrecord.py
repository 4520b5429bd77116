"""Lean recording spans: what a finished span hands to the exporter, and what it does not."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

from router.observe.spanexport import Rebuilder
from router.observe.spanrecord import RecordingTracer, plain_attributes
from router.observe.tracing import extract

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = extract({"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"})


def _tracer(sampler: Any = ALWAYS_ON) -> tuple[RecordingTracer, list[tuple[Any, ...]]]:
    records: list[tuple[Any, ...]] = []
    return RecordingTracer(sampler, records.append), records


def test_a_finished_span_is_one_record_with_everything_the_exporter_needs() -> None:
    """Name, ids, remote parent, kind, attributes, events, links and status survive."""
    tracer, records = _tracer()
    link = trace.get_current_span(PARENT).get_span_context()
    span = tracer.start_span("process x", PARENT, trace.SpanKind.CONSUMER, {"a": 1},
                             [trace.Link(link, {"round": 2})])
    span.add_event("settle", {"outcome": "routed"})
    span.set_status(trace.Status(trace.StatusCode.ERROR, "broken"))
    span.end()

    [record] = records
    rebuilt = Rebuilder("svc", "1.0").span(record)
    assert rebuilt.name == "process x"
    assert format(rebuilt.context.trace_id, "032x") == TRACE_ID
    assert rebuilt.parent is not None
    assert (format(rebuilt.parent.span_id, "016x"), rebuilt.parent.is_remote) == (
        "b7ad6b7169203331", True)
    assert rebuilt.kind is trace.SpanKind.CONSUMER
    assert dict(rebuilt.attributes or {}) == {"a": 1}
    assert [(e.name, dict(e.attributes or {})) for e in rebuilt.events] == [
        ("settle", {"outcome": "routed"})]
    assert [dict(li.attributes or {}) for li in rebuilt.links] == [{"round": 2}]
    assert (rebuilt.status.status_code, rebuilt.status.description) == (
        trace.StatusCode.ERROR, "broken")
    assert rebuilt.start_time is not None
    assert rebuilt.end_time is not None
    assert rebuilt.start_time <= rebuilt.end_time
    assert rebuilt.resource.attributes["service.name"] == "svc"


def test_sampled_out_spans_record_nothing_and_keep_the_trace() -> None:
    """With the sampler off the span only carries context: same trace id, not sampled."""
    tracer, records = _tracer(ParentBased(ALWAYS_OFF))
    span = tracer.start_span("x", extract({}))
    span.end()
    child = RecordingTracer(ALWAYS_OFF, records.append).start_span("y", PARENT)
    child.end()

    assert records == []
    assert not span.is_recording()
    assert format(child.get_span_context().trace_id, "032x") == TRACE_ID


def test_a_root_span_starts_a_new_trace() -> None:
    """Without a parent the span gets a trace id of its own and no parent in its record."""
    tracer, records = _tracer()
    tracer.start_span("root").end()

    [record] = records
    assert record[1] != 0
    assert record[5] == 0


def test_ending_twice_records_once_and_later_changes_are_ignored() -> None:
    """A span is handed over once; after end it is no longer recording."""
    tracer, records = _tracer()
    span = tracer.start_span("x", PARENT)
    span.end()
    span.set_attribute("late", 1)
    span.end()

    assert len(records) == 1
    assert "late" not in records[0][10]
    assert not span.is_recording()


def test_attributes_otlp_cannot_carry_are_dropped() -> None:
    """str, bool, int, float and sequences of them stay (sequences as tuples); others go."""
    kept = plain_attributes({"s": "x", "b": True, "i": 1, "f": 1.5, "list": [1, 2],
                             "obj": object(), "none": None, "bytes": b"x", "mixed": [1, object()]})

    assert kept == {"s": "x", "b": True, "i": 1, "f": 1.5, "list": (1, 2)}


def test_ok_status_is_final_and_recorded_exceptions_are_events() -> None:
    """As in the SDK: OK is not overridden; record_exception adds an exception event."""
    tracer, records = _tracer()
    span = tracer.start_span("x", PARENT)
    span.set_status(trace.StatusCode.OK)
    span.set_status(trace.StatusCode.ERROR, "late")
    span.record_exception(ValueError("bad"))
    span.end()

    [record] = records
    assert record[13] == trace.StatusCode.OK.value
    [(name, _, attributes)] = record[11]
    assert (name, attributes["exception.type"], attributes["exception.message"]) == (
        "exception", "ValueError", "bad")


def test_start_as_current_span_makes_the_span_current() -> None:
    """The context-manager form sets the span current and ends it on exit."""
    tracer, records = _tracer()
    with tracer.start_as_current_span("x", PARENT) as span:
        assert trace.get_current_span() is span

    assert len(records) == 1
