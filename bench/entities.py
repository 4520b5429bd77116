"""The benchmark's entities and messages: names, declarations, backlogs, queue depths.

Every run declares its own exchanges and queues under a fresh ``bench-<tag>-<hex>``
prefix on the broker at ``MCP_AMQP_URL`` and deletes them afterwards
(``cleanup``); the same order message is sent in every run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
import yaml

ROOT = Path(__file__).resolve().parents[1]
URL = os.environ.get("MCP_AMQP_URL", "amqp://guest:guest@localhost:5672/")
PREFETCH = 256
SENT_HEADER = "x-bench-sent"  # time.monotonic_ns() at publish, set by bench/loadgen.py
BODY = json.dumps({
    "order_id": "6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11", "customer_id": "c-42",
    "customer_email": "ada@example.com", "total_amount": 129.9, "currency": "EUR",
    "created_at": "2026-11-24T10:00:00Z",
    "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": 49.95},
              {"sku": "SKU-2", "quantity": 1, "unit_price": 30.0}],
}).encode()


class Names:
    def __init__(self, tag: str) -> None:
        p = f"bench-{tag}-{uuid.uuid4().hex[:6]}"
        self.ingress, self.ingress_q = f"{p}.ingress", f"{p}.ingress.q"
        self.dlx, self.dlq = f"{p}.dlx", f"{p}.dead"
        self.dest, self.dest_q = f"{p}.orders", f"{p}.billing"

    def topology(self) -> dict[str, object]:
        return {
            "ingress": {"exchange": self.ingress, "queue": self.ingress_q},
            "dead_letter": {"exchange": self.dlx, "queue": self.dlq},
            "exchanges": [{"name": self.dest, "type": "topic"}],
            "queues": [{"name": self.dest_q, "type": "quorum"}],
            "bindings": [{"exchange": self.dest, "queue": self.dest_q, "routing_key": "order.#"}],
            "routes": [{"name": "orders", "message_type": "OrderCreated",
                        "when": "message.total_amount > 100.0",  # the SPEC's content route
                        "to": [{"exchange": self.dest, "routing_key": "order.created"}]}],
        }


async def declare_plain(channel: aio_pika.abc.AbstractChannel, n: Names) -> None:
    """The passthrough's entities: the same kinds as the router's."""
    ingress = await channel.declare_exchange(n.ingress, "topic", durable=True)
    queue = await channel.declare_queue(n.ingress_q, durable=True,
                                        arguments={"x-queue-type": "quorum"})
    await queue.bind(ingress, "#")
    dest = await channel.declare_exchange(n.dest, "topic", durable=True)
    dest_q = await channel.declare_queue(n.dest_q, durable=True,
                                         arguments={"x-queue-type": "quorum"})
    await dest_q.bind(dest, "order.#")


def config_dir(names: Names) -> Path:
    """A router configuration directory equivalent to the passthrough (delete it after)."""
    workdir = Path(tempfile.mkdtemp(prefix="mcp-bench-"))
    shutil.copytree(ROOT / "schemas", workdir / "schemas")
    (workdir / "topology.yaml").write_text(yaml.safe_dump(names.topology()))
    return workdir


async def fill(connection: aio_pika.abc.AbstractConnection, exchange: str, count: int) -> None:
    """A backlog of ``count`` messages, published with confirms 1,000 at a time."""
    channel = await connection.channel(publisher_confirms=True)
    ex = await channel.get_exchange(exchange, ensure=False)
    for start in range(0, count, 1000):
        await asyncio.gather(*(ex.publish(message(), routing_key="OrderCreated")
                               for _ in range(start, min(start + 1000, count))))
    await channel.close()


def message(sent_ns: int | None = None) -> aio_pika.Message:
    """The order, persistent; ``sent_ns`` (monotonic) is stamped in ``SENT_HEADER``."""
    # A trace of its own per message, as if each came from a separate request upstream.
    headers: dict[str, object] = {
        "traceparent": f"00-{random.getrandbits(128):032x}-{random.getrandbits(64):016x}-01"}
    if sent_ns is not None:
        headers[SENT_HEADER] = sent_ns  # an int: a float header would be sent as float32
    return aio_pika.Message(
        BODY, type="OrderCreated", content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(uuid.uuid4()),
        headers=headers)  # type: ignore[arg-type]  # aio-pika's header dict is invariant


async def queue_depth(connection: aio_pika.abc.AbstractConnection, name: str) -> int:
    channel = await connection.channel()
    q = await channel.declare_queue(name, passive=True)
    await channel.close()
    return int(q.declaration_result.message_count or 0)


async def purge(connection: aio_pika.abc.AbstractConnection, name: str) -> None:
    channel = await connection.channel()
    await (await channel.get_queue(name, ensure=False)).purge()
    await channel.close()


async def wait_drained(connection: aio_pika.abc.AbstractConnection, n: Names, count: int,
                       stall: float = 60.0) -> None:
    """Until ``count`` messages reached the destination; fails after ``stall`` s without one."""
    seen, since = -1, time.monotonic()
    while (depth := await queue_depth(connection, n.dest_q)) < count:
        if depth != seen:
            seen, since = depth, time.monotonic()
        elif time.monotonic() - since > stall:
            raise SystemExit(f"{n.dest_q}: stuck at {depth} of {count} messages")
        await asyncio.sleep(0.05)


async def cleanup(connection: aio_pika.abc.AbstractConnection, n: Names) -> None:
    channel = await connection.channel()
    # the router's retry tier (router.config.topology.retry_queue) is declared beside the ingress
    retries = [f"{n.ingress_q}.retry.{ms}ms" for ms in (50, 100, 1000, 10_000, 60_000)]
    for q in (n.ingress_q, n.dest_q, n.dlq, *retries):
        await channel.queue_delete(q)  # a queue that does not exist is no error
    for e in (n.ingress, n.dest, n.dlx):
        await channel.exchange_delete(e)
    await channel.close()


def progress(text: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)
