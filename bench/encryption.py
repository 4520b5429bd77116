"""What field-level encryption costs per message, in process (no broker).

The same payment message (two sensitive fields, e-mail and card number, in a
~300-byte body) is prepared by the router's stage after decoding
(``router.core.sealing.prepare``: CloudEvents read, decide, seal each copy) under
two configurations that differ only in the ``x-mcp-sensitive`` marks: three
routes, one of them entitled to plain values.  The difference per message is
what sealing costs (one AES-256-GCM encryption per field for the shared sealed
body, plus the sealed dead-letter body).  Also: one field sealed and opened,
the SDK opening both fields of a delivered copy, parking (the body sealed as
parked for a retry or shaping queue, and ``prepare`` of it back, which opens
both fields first), and reading a CloudEvent's own ``traceparent`` as the parent
when the AMQP header is absent.

    python bench/encryption.py [--messages 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import yaml

from router.config.configuration import Config, load_config
from router.config.keys import rotate
from router.core.envelope import Envelope, Properties
from router.core.fieldcrypt import open_value, seal_value
from router.core.ladder import RetryState
from router.core.outcome import Forward
from router.core.sealing import Sealer, parked_body, prepare
from router.observe.tracing import parent_of
from router.sdk.sealed import keyring_of, open_fields

KEK = os.urandom(32)
SHAPED = RetryState("", "", "", 0, 0, "over the rate limit", "ingress", "x", None)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
FIELD: dict[str, Any] = {"type": "string"}
BODY = {"payment_id": "p-000001", "order_id": "6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11",
        "amount": 129.95, "currency": "EUR", "captured_at": "2026-12-01T09:00:00Z",
        "customer": {"id": "c-42", "name": "Ada Lovelace", "email": "ada@example.com",
                     "card": "4111111111111111"}}


def _schema(sensitive: bool) -> dict[str, Any]:
    mark = {"x-mcp-sensitive": True} if sensitive else {}
    return {"type": "object", "properties": {
        "payment_id": FIELD, "order_id": FIELD, "amount": {"type": "number"},
        "currency": FIELD, "captured_at": FIELD,
        "customer": {"type": "object", "properties": {
            "id": FIELD, "name": FIELD, "email": {"type": "string", **mark},
            "card": {"type": "string", **mark}}}}}


def _config(root: Path, sensitive: bool) -> Config:
    (root / "schemas" / "Payment").mkdir(parents=True)
    (root / "schemas" / "Payment" / "v1.json").write_text(json.dumps(_schema(sensitive)))
    (root / "policies").mkdir()
    (root / "policies" / "encryption.yaml").write_text(
        "encryption:\n  key: pii\n  plain: [{route: books}]\n")
    routes = [{"name": name, "message_type": "Payment",
               "to": [{"exchange": "pay", "routing_key": name}]}
              for name in ("books", "audit", "analytics")]
    (root / "topology.yaml").write_text(yaml.safe_dump(
        {"exchanges": [{"name": "pay"}], "routes": routes}))
    rotate(root / "keys", "pii", KEK, datetime.now(UTC))
    return load_config(root)


def _per_call(work: Callable[[], object], count: int, rounds: int = 5) -> float:
    """Median microseconds per call over ``rounds`` runs of ``count`` calls."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            work()
        times.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(times)


def _trace_rows(count: int) -> list[tuple[str, float]]:
    """The parent context of a span: AMQP header, ce- header, structured event's JSON."""
    body = orjson.dumps(BODY)
    amqp = Envelope(body, Properties(headers={"traceparent": TRACEPARENT}))
    binary = Envelope(body, Properties(headers={"ce-specversion": "1.0",
                                                "ce-traceparent": TRACEPARENT}))
    structured = Envelope(orjson.dumps({"specversion": "1.0", "traceparent": TRACEPARENT,
                                        "data": BODY}),
                          Properties(content_type="application/cloudevents+json"))
    return [(f"trace parent from {name}", _per_call(partial(parent_of, e), count))
            for name, e in (("the AMQP header", amqp), ("ce-traceparent", binary),
                            ("a structured event", structured))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    envelope = Envelope(orjson.dumps(BODY), Properties(type="Payment", message_id="m-1",
                                                       content_type="application/json"))
    with tempfile.TemporaryDirectory() as plain_dir, tempfile.TemporaryDirectory() as pii_dir:
        plain, pii = _config(Path(plain_dir), False), _config(Path(pii_dir), True)
        sealer = Sealer(keyring_of(pii, KEK), os.urandom)
        prepared = prepare(envelope, pii, None, sealer)
        if not isinstance(prepared.outcome, Forward):
            raise SystemExit(f"the benchmark message was not routed: {prepared.outcome}")
        copy = next(c for c in prepared.outcome.copies if c.route == "audit")
        if copy.body is None or b"ada@" in copy.body:
            raise SystemExit("the audit copy is not sealed")
        sealed_body = orjson.loads(copy.body)
        marks = pii.registry.marks("Payment", 1)
        sealed_field = seal_value("ada@example.com", sealer.keyring, os.urandom)
        parked = replace(envelope, body=parked_body(prepared.envelope, pii, sealer))
        rows = [
            ("prepare, no sensitive fields", _per_call(
                lambda: prepare(envelope, plain, None, sealer), args.messages)),
            ("prepare, 2 sensitive fields, 3 routes (1 plain)", _per_call(
                lambda: prepare(envelope, pii, None, sealer), args.messages)),
            ("seal one field (AES-256-GCM)", _per_call(
                lambda: seal_value("ada@example.com", sealer.keyring, os.urandom),
                args.messages)),
            ("open one field", _per_call(
                lambda: open_value(sealed_field, sealer.keyring), args.messages)),
            ("SDK: open both fields of a copy", _per_call(
                lambda: open_fields(sealed_body, marks, sealer.keyring, "Payment"),
                args.messages)),
            ("park: body sealed as parked (2 fields)", _per_call(
                lambda: parked_body(prepared.envelope, pii, sealer), args.messages)),
            ("back from parking: prepare, opening 2 fields", _per_call(
                lambda: prepare(parked, pii, SHAPED, sealer), args.messages)),
            *_trace_rows(args.messages),
        ]
    width = max(len(name) for name, _ in rows)
    print(f"{'':{width}}  µs/message")
    for name, micros in rows:
        print(f"{name:{width}}  {micros:9.1f}")
    print(f"{'encryption cost per routed message':{width}}  {rows[1][1] - rows[0][1]:9.1f}")


if __name__ == "__main__":
    main()
