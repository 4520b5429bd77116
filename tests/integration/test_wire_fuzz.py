"""Fuzzing the wire: hostile content headers of every AMQP field type against a running router.

Hypothesis builds content-header frames byte by byte (``tests.rawamqp``): every
property, and header tables holding every field type with values in and out
of range, invalid UTF-8, keys too long, tables and arrays nested up to 700 deep,
unknown type tags, values that fill a frame, routing keys of any bytes, and the
names a forger would try (``x-delivery-count``,
``x-mcp-attempts``...).  Each example is published between two healthy
messages to one router running for the whole module.  Every healthy message
must be routed promptly and never dead-lettered; every hostile one the broker
accepted must end in exactly one place, routed or dead-lettered (and, when its
properties were what was wrong, counted as a malformed delivery).  What the
broker itself refuses (a NaN, an unknown type tag, delivery mode 7) never
reaches the router; it is counted too, so a run says what it tested.

``MCP_FUZZ_EXAMPLES`` sets the number of examples (default 100).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aio_pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.runtime.service import RouterService, Settings
from router.testing.plugin import delete_entities
from tests.integration.conftest import (
    AMQP_URL,
    ROOT,
    TEST_RETRY_POLICY,
    ConfigDir,
    example_topology,
    order_created,
)
from tests.integration.leftovers import claim
from tests.rawamqp import RawPublisher, properties, shortstr
from tests.wirestrategies import hostile_properties

T = TypeVar("T")
EXAMPLES = int(os.environ.get("MCP_FUZZ_EXAMPLES", "100"))
PROMPT = 10.0  # seconds within which the healthy neighbours must be routed

# --- the running router, in a thread of its own ----------------------------------------------

@dataclass
class Wire:
    """A router, its queues' consumers and a raw publisher, on one event loop in a thread."""

    config: ConfigDir
    loop: asyncio.AbstractEventLoop
    service: RouterService | None = None
    seen: dict[str, list[tuple[str, dict[str, Any]]]] = field(
        default_factory=lambda: defaultdict(list))
    tally: Counter[str] = field(default_factory=Counter)
    raw: RawPublisher | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _collect(self, queue: str) -> Any:
        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            order_id = json.loads(message.body).get("order_id", "?")
            self.seen[order_id].append((queue, dict(message.headers or {})))
            await message.ack()
        return on_message

    async def publish(self, props: dict[str, bytes], body: bytes,
                      routing_key: bytes = b"rk.fuzz") -> str:
        for _ in range(2):
            if self.raw is None:
                self.raw = await RawPublisher.open(AMQP_URL)
            try:
                return await self.raw.publish(self.config.ingress, routing_key,
                                              properties(props), body)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                self.raw.abort()
                self.raw = None  # the broker closed the connection: it refused the message
                return f"connection closed: {exc}"
        raise AssertionError("unreachable")


def _healthy(order_id: str) -> tuple[dict[str, bytes], bytes]:
    body = json.dumps(order_created(order_id=order_id)).encode()
    return {"message_type": shortstr(b"OrderCreated"), "message_id": shortstr(order_id.encode()),
            "content_type": shortstr(b"application/json"), "delivery_mode": b"\x02"}, body


async def _start(wire: Wire) -> tuple[aio_pika.abc.AbstractConnection, asyncio.Event]:
    wire.service = RouterService(wire.config.load(), Settings(AMQP_URL, prefetch=64))
    stop = asyncio.Event()
    wire.loop.create_task(wire.service.run(stop))
    deadline = time.monotonic() + 30
    while not wire.service.ready:
        assert time.monotonic() < deadline, f"router not ready: {wire.service.last_error}"
        await asyncio.sleep(0.05)
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=200)
    for queue in (wire.config.name("billing"), wire.config.name("review"),
                  wire.config.dead_queue):
        await (await channel.get_queue(queue, ensure=False)).consume(wire._collect(queue))
    return connection, stop


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wire]:
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(ROOT / "schemas", root / "schemas")
    (root / "policies").mkdir()
    (root / "policies" / "retry.yaml").write_text(TEST_RETRY_POLICY)
    prefix = claim(f"t{uuid.uuid4().hex[:10]}")
    config = ConfigDir(root, prefix, {})
    topology = example_topology(prefix)
    # Every header and property goes through the CEL conversion, without changing the routing.
    topology["routes"][0]["when"] = 'size(headers) >= 0 && size(properties) > 0'
    config.write(topology)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    state = Wire(config, loop)
    connection, stop = state.run(_start(state))
    try:
        yield state
    finally:
        async def finish() -> None:
            stop.set()
            await asyncio.sleep(0.5)
            if state.raw is not None:
                await state.raw.close()
            await delete_entities(connection, *config.entities())
            await connection.close()
        state.run(finish())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _arrived(wire: Wire, order_ids: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not all(wire.seen.get(i) for i in order_ids):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(props=hostile_properties(),
       routing_key=st.one_of(st.just(b"rk.fuzz"), st.binary(max_size=255)))
def test_hostile_content_headers_never_stop_or_cost_healthy_messages(
        wire: Wire, props: dict[str, bytes], routing_key: bytes) -> None:
    """Healthy neighbours are routed promptly; a hostile message ends in exactly one place."""
    before, hostile, after = (str(uuid.uuid4()) for _ in range(3))
    body = json.dumps(order_created(order_id=hostile)).encode()

    wire.run(wire.publish(*_healthy(before)))
    verdict = wire.run(wire.publish(props, body, routing_key))
    wire.run(wire.publish(*_healthy(after)))

    assert wire.run(_arrived(wire, [before, after], PROMPT)), \
        f"healthy messages not routed within {PROMPT}s: {verdict}"
    for order_id in (before, after):
        assert [q for q, _ in wire.seen[order_id]] == [wire.config.name("billing")]
    wire.tally["examples"] += 1
    if verdict != "ack":
        wire.tally["refused by the broker at publish"] += 1
        return
    assert wire.run(_arrived(wire, [hostile], PROMPT)), "hostile message went nowhere"
    [(queue, headers)] = wire.seen[hostile]
    if queue == wire.config.dead_queue:
        wire.tally[f"dead-lettered ({headers.get('x-mcp-reason', 'by the queue')})"] += 1
        error = str(headers.get("x-mcp-error", ""))
        if error.startswith(("header ", "property ", "properties ", "routing key ")):
            wire.tally["counted malformed deliveries"] += 1
    else:
        wire.tally[f"routed to {queue.removeprefix(wire.config.prefix + '.')}"] += 1


def test_every_fuzzed_message_ended_once_and_the_count_matches(wire: Wire) -> None:
    """After the fuzz: no duplicates anywhere, and the malformed-delivery metric agrees."""
    time.sleep(1.0)  # a late duplicate (a requeue) would show up here

    duplicates = {k: v for k, v in wire.seen.items() if len(v) > 1}
    assert wire.service is not None
    metric = wire.service.metrics.malformed_deliveries
    counted = sum(metric.labels(p)._value.get() for p in ("undecodable", "unsendable"))
    print("\nwire fuzz:", dict(sorted(wire.tally.items())))

    assert wire.tally["examples"] >= min(EXAMPLES, 10)
    assert not duplicates
    assert not any("by the queue" in outcome for outcome in wire.tally)  # no poison loops
    assert counted == wire.tally["counted malformed deliveries"]
    assert metric.labels("rejected")._value.get() == 0
