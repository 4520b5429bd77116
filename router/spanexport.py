"""The span exporter process: ``python -m router.spanexport``, started by ``SpanShipper``.

It reads length-prefixed ``marshal`` frames on stdin: first the exporter
settings, then batches of ``SpanRecord`` tuples, ``flush`` requests (answered
with a line ``ok`` or ``failed`` on stdout once everything before them was
exported) and ``stop``.  Each record becomes an SDK ``ReadableSpan``
(attributes bounded by the SDK's ``BoundedAttributes``) and every batch is
exported with the SDK's own OTLP exporter, over http/protobuf or gRPC, with
its retries.  End of input (the router is gone) exports what is left and
exits; SIGINT and SIGTERM are ignored, so a Ctrl-C to the terminal's process
group lets the router flush through it first.  Encoding here, in a process
of its own, keeps it off the router's event loop and its core.
"""

from __future__ import annotations

import marshal
import signal
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from router.spanrecord import SpanRecord
from router.spanship import BATCH, CONFIG, FLUSH, HEADER, SPANS, STOP
from router.telemetry import TelemetrySettings, span_exporter

__all__ = ["Rebuilder", "frames", "main"]

LIMIT = 128  # the SDK's default attribute, event and link count limits


def _bounded(attributes: dict[str, Any]) -> BoundedAttributes:
    return BoundedAttributes(LIMIT, attributes, immutable=True)


class Rebuilder:
    """Turns span records back into the SDK's ``ReadableSpan``s of one resource."""

    def __init__(self, service_name: str, version: str) -> None:
        self.resource = Resource.create({"service.name": service_name,
                                         "service.version": version})
        self.scope = InstrumentationScope("mcp-router", version)

    def span(self, record: SpanRecord) -> ReadableSpan:
        (name, trace_id, span_id, flags, state, parent_id, parent_remote, kind, start, end,
         attributes, events, links, status_code, status_description) = record
        trace_state = trace.TraceState(list(state)) if state else None
        context = trace.SpanContext(trace_id, span_id, False, trace.TraceFlags(flags),
                                    trace_state)
        parent = trace.SpanContext(trace_id, parent_id, parent_remote, trace.TraceFlags(flags),
                                   trace_state) if parent_id else None
        return ReadableSpan(
            name=name, context=context, parent=parent, resource=self.resource,
            attributes=_bounded(attributes),
            events=[Event(n, _bounded(a), ts) for n, ts, a in events[:LIMIT]],
            links=[trace.Link(trace.SpanContext(t, s, True, trace.TraceFlags(f)), _bounded(a))
                   for t, s, f, a in links[:LIMIT]],
            kind=trace.SpanKind(kind),
            status=trace.Status(trace.StatusCode(status_code), status_description),
            start_time=start, end_time=end, instrumentation_scope=self.scope)


def frames(stream: BinaryIO) -> Iterator[tuple[int, Any]]:
    """The frames on ``stream`` until its end."""
    while True:
        header = stream.read(HEADER.size)
        if len(header) < HEADER.size:
            return
        (size,) = HEADER.unpack(header)
        body = stream.read(size)
        if len(body) < size:
            return
        # Our own parent process wrote it: marshal of plain values, no code.
        yield marshal.loads(body)  # noqa: S302


def _export(exporter: SpanExporter, spans: list[ReadableSpan]) -> bool:
    ok = True
    for start in range(0, len(spans), BATCH):
        ok = exporter.export(spans[start:start + BATCH]) is SpanExportResult.SUCCESS and ok
    return ok


def main() -> int:
    # Ctrl-C (or a SIGTERM to the whole process group) is for the router, which then
    # flushes and stops us; we end on its ``stop`` frame or when its pipe closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stream, answers = sys.stdin.buffer, sys.stdout.buffer
    incoming = frames(stream)
    kind, config = next(incoming, (None, None))
    if kind != CONFIG or not isinstance(config, dict):
        print("router.spanexport: expected the settings frame first", file=sys.stderr)
        return 2
    settings = TelemetrySettings(
        service_name=config["service_name"], exporter="otlp", endpoint=config["endpoint"],
        protocol=config["protocol"], headers=tuple(tuple(h) for h in config["headers"]))
    exporter = span_exporter(settings)
    rebuild = Rebuilder(config["service_name"], config["version"])
    ok = True
    try:
        for kind, payload in incoming:
            if kind == SPANS:
                ok = _export(exporter, [rebuild.span(r) for r in payload]) and ok
            elif kind == FLUSH:
                answers.write(b"ok\n" if ok else b"failed\n")
                answers.flush()
                ok = True
            elif kind == STOP:
                break
    finally:
        exporter.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
