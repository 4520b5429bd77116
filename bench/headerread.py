"""What reading one delivery's content header and trace context costs: hand-read and reference.

The bench's message (``bench.entities.message``: aio-pika's properties, a
``traceparent`` and ``x-bench-sent``), its content header as the broker sends
it.  Each row times the router's function against what it used before: the
tolerant decoder (``router.broker.wire``, pamqp's) for the header, the SDK's
propagator for the trace context; microseconds per call, best of the rounds
(so other load on the machine inflates it least).

    python -m bench.headerread [--rounds 7] [--number 20000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from pamqp import header

from bench.entities import message
from bench.microtable import best_us, print_rows
from router.broker import frames, wire
from router.core.envelope import Envelope, Properties
from router.observe import tracing


def _sdk_extract(headers: Any) -> Any:
    return tracing._PROPAGATOR.extract(headers, getter=tracing._GETTER)


def _sdk_parent_of(envelope: Envelope) -> Any:
    context = _sdk_extract(envelope.properties.headers)
    return context if tracing._usable(context) else None


def _sdk_inject(span: trace.Span) -> dict[str, str]:
    carrier: dict[str, str] = {}
    tracing._PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def _rows() -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    sent = message(time.monotonic_ns())
    payload = header.ContentHeader(0, len(sent.body), sent.properties).marshal()
    headers = frames.content_header(payload).properties.headers
    envelope = Envelope(sent.body, Properties(headers=headers, type="OrderCreated"))
    span = tracing.PropagatingTracer().start_span("process", tracing.extract(headers))
    return [
        ("content header", lambda: frames.content_header(payload),
         lambda: wire.unmarshal_header(payload)),
        ("trace extract", lambda: tracing.extract(headers), lambda: _sdk_extract(headers)),
        ("parent_of", lambda: tracing.parent_of(envelope), lambda: _sdk_parent_of(envelope)),
        ("inject", lambda: tracing.inject(span), lambda: _sdk_inject(span)),
    ]


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000, help="calls per round")
    args = parser.parse_args()
    rows = []
    for name, ours, before in _rows():
        now = best_us(ours, args.number, args.rounds)
        then = best_us(before, args.number, args.rounds)
        rows.append({"call": name, "reference_us": round(then, 2), "router_us": round(now, 2),
                     "saved_us": round(then - now, 2)})
    print_rows(rows, {"call": "call", "reference_us": "reference µs", "router_us": "router µs",
                      "saved_us": "saved µs"})


if __name__ == "__main__":
    main()
