"""The span exporter process: ``python -m router.observe.spanexport``, started by ``SpanShipper``.

It reads length-prefixed ``marshal`` frames on stdin: first the exporter
settings, then batches of ``SpanRecord`` tuples, ``flush`` requests (answered
with a line ``ok`` or ``failed`` on stdout once everything before them was
exported) and ``stop``.  Each batch is encoded straight to an OTLP request
(``router.observe.otlpwire``: the bytes the SDK's encoder gives, 15 times faster)
and sent, over http/protobuf (``router.observe.otlphttp``, with ``requests``) or
gRPC (``router.observe.otlpgrpc``, with ``grpc``), with the headers, compression,
TLS, timeout and retries the SDK's OTLP exporters would use
(``router.observe.otlpsending``): public APIs only, so an SDK upgrade cannot break
it.  ``Rebuilder`` turns records into the SDK's ``ReadableSpan``s, for the tests'
comparisons.  End of input (the router is gone) exports what is left and exits;
SIGINT and SIGTERM are ignored, so a Ctrl-C to the terminal's process group lets
the router flush through it first.  Encoding here, in a process of its own,
keeps it off the router's event loop and its core.
"""

from __future__ import annotations

import logging
import marshal
import signal
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from router.observe.logs import configure
from router.observe.otlpsending import Sender, SendOptions
from router.observe.otlpwire import encode_prefix, encode_request
from router.observe.spanrecord import SpanRecord
from router.observe.spanship import BATCH, CONFIG, FLUSH, HEADER, SPANS, STOP

__all__ = ["Rebuilder", "frames", "main"]

log = logging.getLogger("router.spanexport")

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


def _sender(config: dict[str, Any]) -> Sender:
    """The sender the settings frame asks for; only its protocol's client library loads."""
    options = SendOptions(**config["sending"])
    agent = f"mcp-router/{config['version']}"
    if config["protocol"] == "grpc":
        from router.observe.otlpgrpc import GrpcSender  # noqa: PLC0415 - grpc only when asked

        return GrpcSender(config["endpoint"], options, agent)
    from router.observe.otlphttp import HttpSender  # noqa: PLC0415 - requests only when asked

    return HttpSender(config["endpoint"], options, agent)


def _export(sender: Sender, prefix: tuple[bytes, bytes], records: list[SpanRecord]) -> bool:
    ok = True
    for start in range(0, len(records), BATCH):
        ok = sender.send(encode_request(prefix, records[start:start + BATCH])) and ok
    return ok


def _serve(incoming: Iterator[tuple[int, Any]], answers: BinaryIO, sender: Sender,
           prefix: tuple[bytes, bytes]) -> None:
    """Export each batch of spans, answer each flush, until ``stop`` or the end of input."""
    ok = True
    for kind, payload in incoming:
        if kind == SPANS:
            ok = _export(sender, prefix, payload) and ok
        elif kind == FLUSH:
            answers.write(b"ok\n" if ok else b"failed\n")
            answers.flush()
            ok = True
        elif kind == STOP:
            return


def main() -> int:
    # Ctrl-C (or a SIGTERM to the whole process group) is for the router, which then
    # flushes and stops us; we end on its ``stop`` frame or when its pipe closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure("WARNING")
    incoming = frames(sys.stdin.buffer)
    kind, config = next(incoming, (None, None))
    if kind != CONFIG or not isinstance(config, dict):
        log.error("expected the settings frame first")
        return 2
    try:
        sender = _sender(config)
    except OSError as exc:  # a TLS file named in the settings cannot be read
        log.error("cannot export spans: %s", exc)
        return 2
    resource = Rebuilder(config["service_name"], config["version"]).resource
    prefix = encode_prefix(dict(resource.attributes), "mcp-router", config["version"])
    try:
        _serve(incoming, sys.stdout.buffer, sender, prefix)
    finally:
        sender.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
