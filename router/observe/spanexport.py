"""The span exporter process: ``python -m router.observe.spanexport``, started by ``SpanShipper``.

It reads length-prefixed ``marshal`` frames on stdin: first the exporter
settings, then batches of ``SpanRecord`` tuples, ``flush`` requests (answered
with a line ``ok`` or ``failed`` on stdout once everything before them was
exported) and ``stop``.  Each batch is encoded straight to an OTLP request
(``router.observe.otlpwire``: the bytes the SDK's encoder gives, 15 times faster) and
sent by the SDK's own OTLP exporter, over http/protobuf or gRPC, with its
retries, compression and headers: ``HttpExport`` and ``GrpcExport`` hand it the
encoded request where it would have encoded one itself.  ``Rebuilder`` turns
records into the SDK's ``ReadableSpan``s, for the tests' comparisons.  End of
input (the router is gone) exports what is left and exits; SIGINT and SIGTERM
are ignored, so a Ctrl-C to the terminal's process group lets the router flush
through it first.  Encoding here, in a process
of its own, keeps it off the router's event loop and its core.
"""

from __future__ import annotations

import marshal
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from router.observe.otlpwire import encode_prefix, encode_request
from router.observe.spanrecord import SpanRecord
from router.observe.spanship import BATCH, CONFIG, FLUSH, HEADER, SPANS, STOP
from router.observe.telemetry import TelemetrySettings, span_exporter

__all__ = ["Encoded", "GrpcExport", "HttpExport", "Rebuilder", "frames", "main"]

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
            events=[Event(n, _bounded(a), ts) for n, ts, a in events[-LIMIT:]],
            links=[trace.Link(trace.SpanContext(t, s, True, trace.TraceFlags(f)), _bounded(a))
                   for t, s, f, a in links[-LIMIT:]],
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
        yield marshal.loads(body)  # noqa: S302 - written by our own parent (see above)


@dataclass(frozen=True)
class Encoded:
    """An OTLP request already encoded, and how many spans it holds."""

    payload: bytes
    count: int


class HttpExport(HttpSpanExporter):
    """The SDK's OTLP/HTTP exporter, sending requests encoded elsewhere."""

    def export_encoded(self, batch: Encoded) -> bool:
        if self._shutdown:
            return False
        # The SDK's own client: compression, retries with backoff, timeout, headers.
        return bool(self._client.export(batch.payload).success)


class GrpcExport(GrpcSpanExporter):
    """The SDK's OTLP/gRPC exporter, sending requests encoded elsewhere."""

    def _translate_data(self, data: Any) -> ExportTraceServiceRequest:
        if isinstance(data, Encoded):  # parsed by protobuf's C code, re-sent as is
            request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(
                data.payload)
            return request
        return super()._translate_data(data)

    def _count_data(self, data: Any) -> int:
        return data.count if isinstance(data, Encoded) else int(super()._count_data(data))

    def export_encoded(self, batch: Encoded) -> bool:
        # The SDK's own loop: retries with backoff, reconnecting, timeout, metadata.  It is
        # typed for spans; _translate_data above takes an Encoded batch as well.
        return bool(self._export(batch) is SpanExportResult.SUCCESS)  # type: ignore[arg-type]  # above


def _export(exporter: HttpExport | GrpcExport, prefix: tuple[bytes, bytes],
            records: list[SpanRecord]) -> bool:
    ok = True
    for start in range(0, len(records), BATCH):
        chunk = records[start:start + BATCH]
        ok = exporter.export_encoded(Encoded(encode_request(prefix, chunk), len(chunk))) and ok
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
        print("router.observe.spanexport: expected the settings frame first", file=sys.stderr)
        return 2
    settings = TelemetrySettings(
        service_name=config["service_name"], exporter="otlp", endpoint=config["endpoint"],
        protocol=config["protocol"], headers=tuple(tuple(h) for h in config["headers"]))
    exporter = span_exporter(settings, http=HttpExport, grpc=GrpcExport)
    assert isinstance(exporter, HttpExport | GrpcExport)  # noqa: S101 -- asked for just these
    resource = Rebuilder(config["service_name"], config["version"]).resource
    prefix = encode_prefix(dict(resource.attributes), "mcp-router", config["version"])
    ok = True
    try:
        for kind, payload in incoming:
            if kind == SPANS:
                ok = _export(exporter, prefix, payload) and ok
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
