"""What each stage costs per message, in microseconds, so a regression shows where it came from.

The repository's own configuration (access policy, limits, breakers, a CEL
route, a v1 -> v2 upcast) and an OrderCreated message; each stage is the
router's own function, timed alone on this process's core (best of five
rounds, so other load on the machine inflates it least).  The journal line
appears when the build has one (``router.observe.journal``).  Tracing is timed the
three ways a message can be traced: context only (nothing exported), recorded
for the exporter process (every span exported), and the SDK's own spans with
its batch processor (what exporting used before), each for one process span,
one publish span, the injected ``traceparent`` and the settle event.

    python -m bench.stages [--rounds 5] [--loops 2000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from router.config.configuration import load_config
from router.core.admission import admit, copy_overrides
from router.core.breakers import BreakerBoard
from router.core.decode import decode
from router.core.envelope import Envelope, Properties
from router.core.outcome import Decoded
from router.core.pipeline import decide
from router.core.route import select
from router.core.upcast import run
from router.core.validate import validate
from router.observe.conventions import publish_attributes, publish_name, record_settlement
from router.observe.spanrecord import RecordingTracer
from router.observe.tracing import PropagatingTracer, Received, inject, process_span

ROOT = Path(__file__).resolve().parents[1]
BODY_V2 = json.dumps({
    "order_id": "6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11", "customer_id": "c-42",
    "customer_email": "ada@example.com", "total_amount": 1129.9, "currency": "EUR",
    "created_at": "2026-11-24T10:00:00Z",
    "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": 49.95},
              {"sku": "SKU-2", "quantity": 1, "unit_price": 30.0}]}).encode()
BODY_V1 = json.dumps({"order_id": "6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11",
                      "customer_id": "c-42", "total_amount": 129.9}).encode()
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class _Dropping(SpanExporter):
    """Exports nothing: the SDK row's encoding cost stays out of this process's timing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def per_call(fn: Callable[[], object], rounds: int, loops: int) -> float:
    """Microseconds per call of ``fn``: the best round of ``rounds``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / loops / 1000)
    return best


def envelope(body: bytes, version: int) -> Envelope:
    return Envelope(body, Properties(content_type="application/json", type="OrderCreated",
                                     message_id="m-1", user_id="guest",
                                     headers={"traceparent": TRACEPARENT,
                                              "x-schema-version": version}),
                    "mcp.ingress", "OrderCreated")


def traced(tracer: trace.Tracer, env: Envelope) -> Callable[[], None]:
    """One message's spans as the router makes them: process, one publish, settle."""
    def once() -> None:
        span = process_span(tracer, env, Received("mcp.router.ingress", 1, ("localhost", 5672)))
        parent = trace.set_span_in_context(span)
        if isinstance(tracer, PropagatingTracer):
            child = tracer.start_span("", parent)
        else:
            child = tracer.start_span(
                publish_name("orders"), parent, trace.SpanKind.PRODUCER,
                publish_attributes("orders", "order.created", message_id="m-1",
                                   body_size=len(env.body), route="order-created"))
        inject(child)
        child.set_attribute("mcp.router.attempts", 1)
        child.end()
        if span.is_recording():
            record_settlement(span, acked=True, outcome="routed")
        span.end()
    return once


def stages(rounds: int, loops: int) -> list[tuple[str, float]]:
    config = load_config(ROOT)
    policies = config.policies
    v2, v1 = envelope(BODY_V2, 2), envelope(BODY_V1, 1)
    decoded = decode(v2)
    assert isinstance(decoded, Decoded)  # noqa: S101 -- the bench's own message
    lineage = config.registry.lineage("OrderCreated")
    v1_body = json.loads(BODY_V1)
    board = BreakerBoard()
    breakers = board.of(policies.circuit_breakers, config.topology)

    def breaker() -> None:
        found = breakers.of("orders", "order.created", 1.0)
        if found is not None:
            found.succeeded(found.admit(1.0), 1.0)

    rows: list[tuple[str, Callable[[], object]]] = [
        ("policy (authorization, limits, priority)",
         lambda: (admit(v2, "OrderCreated", policies.authorization, policies.limits),
                  copy_overrides("OrderCreated", policies.limits, policies.priority, None))),
        ("decode (JSON)", lambda: decode(v2)),
        ("validation (JSON Schema)", lambda: validate(decoded, config.registry)),
        ("route + CEL (when: total_amount > 1000)",
         lambda: select(config.router, decoded, v2)),
        ("upcast v1 -> v2 (steps only)", lambda: run(lineage.chain(1, 2), v1_body)),
        ("breakers (find, admit, report)", breaker),
    ]
    journal = _journal_stage()
    if journal is not None:
        rows.append(journal)
    sink: deque[Any] = deque(maxlen=10_000)
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(_Dropping(), max_queue_size=10_000))
    rows += [
        ("tracing, context only (not exported)", traced(PropagatingTracer(), v2)),
        ("tracing, recorded for export (100 %)", traced(RecordingTracer(ALWAYS_ON, sink.append),
                                                       v2)),
        ("  (SDK spans + batch processor, before)", traced(provider.get_tracer("b"), v2)),
        ("whole pure core: decide(), v2 message", lambda: decide(v2, config)),
        ("whole pure core: decide(), v1 upcast", lambda: decide(v1, config)),
    ]
    results = [(name, per_call(fn, rounds, loops)) for name, fn in rows]
    provider.shutdown()
    return results


def _journal_stage() -> tuple[str, Callable[[], object]] | None:
    """The journal's record calls for one routed message (``bench.journal``)."""
    from bench.journal import record_one_message  # noqa: PLC0415 -- imports the broker bench
    from router.observe.journal import Journal  # noqa: PLC0415 -- beside it

    journal = Journal()
    counter = iter(range(1 << 62))
    return ("journal (record one message)", lambda: record_one_message(journal, next(counter)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loops", type=int, default=2000)
    args = parser.parse_args()
    results = stages(args.rounds, args.loops)
    print(f"\nper-stage cost, µs per message (best of {args.rounds} rounds of {args.loops})")
    for name, micros in results:
        print(f"  {name:44} {micros:8.1f}")
    if importlib.util.find_spec("router.observe.journal") is None:
        print("  journal: not in this build")


if __name__ == "__main__":
    main()
