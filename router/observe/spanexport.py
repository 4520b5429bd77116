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

It logs on stderr as the router does, with ``logs.configure`` and the level and
format the settings frame names, every line of it: an uncaught exception is a
log record too, and gRPC's core, which would print lines of its own, is kept
quiet (what it reports reaches us as the call's error, logged).  When it cannot
start (a TLS file gone since the router checked it, a setting the sender
refuses) it says why in one error line and exits with status 2; the shipper
waits before it starts another (``spanship.Restarts``).  A batch that fails in
an unforeseen way is logged and counted as not exported, never the end of the
process.
"""

from __future__ import annotations

import logging
import marshal
import os
import signal
import sys
from collections.abc import Iterator
from types import TracebackType
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
    options.check_files()  # ValueError naming the file and its variable
    agent = f"mcp-router/{config['version']}"
    if config["protocol"] == "grpc":
        from router.observe.otlpgrpc import GrpcSender  # noqa: PLC0415 - grpc only when asked

        return GrpcSender(config["endpoint"], options, agent)
    from router.observe.otlphttp import HttpSender  # noqa: PLC0415 - requests only when asked

    return HttpSender(config["endpoint"], options, agent)


def _start_sending(config: dict[str, Any]) -> Sender | None:
    """The sender, or None when it cannot be made, said in one error line."""
    try:
        return _sender(config)
    except ValueError as exc:  # a TLS file that cannot be read: the message names its variable
        log.error("cannot export spans: %s", exc)
    except Exception as exc:  # noqa: BLE001 - whatever the sender refuses is one line, then exit 2
        log.error("cannot export spans: %s: %s", type(exc).__name__, exc)
    return None


def _export(sender: Sender, prefix: tuple[bytes, bytes], records: list[SpanRecord]) -> bool:
    ok = True
    for start in range(0, len(records), BATCH):
        try:
            ok = sender.send(encode_request(prefix, records[start:start + BATCH])) and ok
        except Exception:  # a batch that fails must not end the process (and every batch
            # after it with it): logged with its traceback, counted as not exported
            log.exception("spans not exported: the batch failed")
            ok = False
    return ok


def _log_crash(kind: type[BaseException], error: BaseException,
               trace: TracebackType | None) -> None:
    """``sys.excepthook``: an uncaught exception is a log record, in the router's format."""
    log.critical("span exporter process failed", exc_info=(kind, error, trace))


def _log_like_the_router(settings: Any) -> None:
    """The level and format the settings frame names (``logs.settings`` of the router)."""
    if not isinstance(settings, dict):
        return
    try:
        configure(settings.get("level", "WARNING"), settings.get("format", "text"))
    except (TypeError, ValueError) as exc:
        log.error("cannot log as the router does (%s)", exc)


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
    # gRPC's core prints lines of its own on stderr, which no log pipeline expecting the
    # router's format can parse; set before grpc loads (an operator's own setting wins).
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    configure("WARNING")  # until the settings frame says how the router logs
    sys.excepthook = _log_crash
    logging.captureWarnings(True)
    incoming = frames(sys.stdin.buffer)
    kind, config = next(incoming, (None, None))
    if kind != CONFIG or not isinstance(config, dict):
        log.error("expected the settings frame first")
        return 2
    _log_like_the_router(config.get("log"))
    sender = _start_sending(config)
    if sender is None:
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
