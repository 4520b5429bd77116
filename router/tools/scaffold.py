"""``mcp-router init DIR``: a small working configuration to start from.

What ``pip install mcp-router`` does not give: a topology with routes (one
with a ``when``), two message types, one of them in two versions with an
upcaster between them, a retry policy and input limits, and a README that
says what to do next.  ``check --config DIR`` passes on it and ``run``
routes with it.  Nothing that exists is overwritten.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["FILES", "run_init", "write_scaffold"]

_TOPOLOGY = """\
# mcp-router configuration written by `mcp-router init`: a shop's orders and payments.
# Services publish every event to the ingress exchange; the router validates it
# against schemas/ and sends a copy to each route that takes it.
ingress:
  exchange: mcp.ingress          # services publish here (any routing key)
  queue: mcp.router.ingress      # quorum queue the router consumes
  delivery_limit: 5              # a message that crashes the router 5 times is dead-lettered
dead_letter:
  exchange: mcp.dlx              # routing key "<reason>.<MessageType>"
  queue: mcp.dead-letters

exchanges:
  - {name: shop, type: topic}

queues:
  - {name: shop.orders, type: quorum}
  - {name: shop.review, type: quorum}
  - {name: shop.payments, type: quorum}

bindings:
  - {exchange: shop, queue: shop.orders, routing_key: order.placed}
  - {exchange: shop, queue: shop.review, routing_key: order.big}
  - {exchange: shop, queue: shop.payments, routing_key: "payment.#"}

routes:
  - name: orders
    message_type: OrderPlaced
    version: 2                   # v1 orders are upcast (schemas/OrderPlaced/evolution.yaml)
    to:
      - {exchange: shop, routing_key: order.placed}
  - name: big-orders
    message_type: OrderPlaced
    when: 'message.total > 100.0'
    to:
      - {exchange: shop, routing_key: order.big}
  - name: payments
    message_type: PaymentReceived
    to:
      - {exchange: shop, routing_key: payment.received}
"""

_ORDER_V1 = """\
{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "OrderPlaced v1",
  "type": "object",
  "required": ["order_id", "total"],
  "properties": {
    "order_id": {"type": "string", "minLength": 1},
    "total": {"type": "number", "minimum": 0}
  },
  "additionalProperties": false
}
"""

_ORDER_V2 = """\
{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "OrderPlaced v2: with a currency",
  "type": "object",
  "required": ["order_id", "total", "currency"],
  "properties": {
    "order_id": {"type": "string", "minLength": 1},
    "total": {"type": "number", "minimum": 0},
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}
  },
  "additionalProperties": false
}
"""

_ORDER_EVOLUTION = """\
# How OrderPlaced evolves: `check` proves every v1 order becomes a valid v2 one.
compatibility: backward
upcasters:
  - from: 1
    steps:
      - default: {field: currency, value: EUR}
"""

_PAYMENT_V1 = """\
{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "PaymentReceived v1",
  "type": "object",
  "required": ["order_id", "amount"],
  "properties": {
    "order_id": {"type": "string", "minLength": 1},
    "amount": {"type": "number", "minimum": 0},
    "method": {"enum": ["card", "transfer"]}
  }
}
"""

_RETRY = """\
# A copy the broker did not confirm: tried again in process, then on the broker.
retry:
  - match: "*"
    attempts: 3
    backoff: {initial: 50ms, multiplier: 2, max: 500ms}
    delays: [1s, 10s, 1m]
"""

_LIMITS = """\
# Input limits: what is over them is dead-lettered as malformed, with the reason.
limits:
  - match: "*"
    max_body_bytes: 262144
    required_properties: [message_id]
"""

_README = """\
# mcp-router configuration

Written by `mcp-router init`. Next: `mcp-router check --config {dir}`, then
`mcp-router run --config {dir} --http 127.0.0.1:8080` (RabbitMQ at
MCP_AMQP_URL), and in another terminal

    mcp-router publish --config {dir} --type OrderPlaced --version 1 \\
        '{"order_id": "o-1", "total": 120.0}'
    mcp-router follow MESSAGE_ID          # the id publish printed

Edit topology.yaml, schemas/ and policies/; the running router reloads them.
"""

FILES: dict[str, str] = {
    "topology.yaml": _TOPOLOGY,
    "schemas/OrderPlaced/v1.json": _ORDER_V1,
    "schemas/OrderPlaced/v2.json": _ORDER_V2,
    "schemas/OrderPlaced/evolution.yaml": _ORDER_EVOLUTION,
    "schemas/PaymentReceived/v1.json": _PAYMENT_V1,
    "policies/retry.yaml": _RETRY,
    "policies/limits.yaml": _LIMITS,
    "README.md": _README,
}


def write_scaffold(directory: Path) -> list[Path]:
    """Write ``FILES`` below ``directory``; ``FileExistsError`` (nothing written) if any is
    there already.  Returns the files written."""
    targets = [directory / rel for rel in FILES]
    existing = [t for t in targets if t.exists()]
    if existing:
        raise FileExistsError(f"{existing[0]} exists already (nothing was written)")
    for target, text in zip(targets, FILES.values(), strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.replace("{dir}", str(directory)) if target.name == "README.md"
                          else text, encoding="utf-8")
    return targets


def run_init(directory: Path) -> int:
    """``mcp-router init DIR``: 0 when written, 1 (nothing written) when it cannot be."""
    try:
        written = write_scaffold(directory)
    except OSError as exc:
        print(f"mcp-router: cannot write the configuration: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    print(f"next: mcp-router check --config {directory}, then mcp-router run --config "
          f"{directory} --http 127.0.0.1:8080 (see {directory / 'README.md'})")
    return 0
