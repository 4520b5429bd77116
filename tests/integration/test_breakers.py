"""Circuit breakers on the real broker: a queue without consumers, a full queue, /readyz."""

from __future__ import annotations

import asyncio
import json

from router.observe.metrics import Metrics
from tests.integration.conftest import (
    Broker,
    ConfigDir,
    free_port,
    http_call,
    order_created,
    wait_until,
)


def _breaker(directory: ConfigDir, **rule: object) -> str:
    """Write a breaker policy on the billing destination; returns the destination name."""
    orders = directory.name("orders")
    rule = {"exchange": orders, "routing_key": "order.created", **rule}
    (directory.path / "policies" / "breakers.yaml").write_text(
        json.dumps({"circuit_breakers": [rule]}))
    return f"{orders}/order.created"


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def _publish_orders(broker: Broker, directory: ConfigDir, n: int) -> set[str]:
    ids = {f"{directory.prefix}-{i}" for i in range(n)}
    for message_id in sorted(ids):
        await broker.publish(directory.ingress, order_created(), type="OrderCreated",
                             message_id=message_id)
    return ids


async def test_queue_without_consumers_holds_copies_until_one_attaches(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """While billing has no consumer, its copies cycle through the retry tier (nothing
    delivered, nothing dead-lettered); a consumer closes the breaker and all arrive."""
    destination = _breaker(config_dir, require_consumers=True, check_every="100ms",
                           wait="50ms", queues=[config_dir.name("billing")])
    router = await start_router(config_dir)
    metrics = router.service.metrics

    async def state_is(state: str) -> bool:
        return router.service.circuits()[destination]["state"] == state

    await wait_until(lambda: state_is("open"))
    sent = await _publish_orders(broker, config_dir, 5)

    async def waited_twice() -> bool:
        return _sample(metrics, "mcp_router_copies_total", route="order-created",
                       result="circuit_wait") >= 10

    await wait_until(waited_twice)
    assert await broker.count(config_dir.name("billing")) == 0
    assert "has no consumers" in str(router.service.circuits()[destination]["reason"])

    delivered = await broker.take(config_dir.name("billing"), 5, timeout=20)

    assert {m.message_id for m in delivered} == sent
    assert await state_is("closed")
    assert await broker.count(config_dir.dead_queue) == 0
    for state in ("open", "half_open", "closed"):
        assert _sample(metrics, "mcp_router_circuit_transitions_total",
                       destination=destination, state=state) >= 1


async def test_full_queue_refusing_publishes_opens_and_nothing_is_lost(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """A queue capped at 2 with reject-publish nacks the rest: after 2 refusals the breaker
    opens, half-open probes fail while it is full, and once it is drained every message
    arrives exactly where it should, none dead-lettered."""
    topology = config_dir.topology
    billing = next(q for q in topology["queues"] if q["name"] == config_dir.name("billing"))
    # A classic queue: it enforces x-max-length exactly (a quorum queue only after the
    # fact, so pipelined publishes can overshoot it).
    billing.update(type="classic", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    config_dir.write(topology)
    destination = _breaker(config_dir, failures=2, open_for="200ms", wait="50ms")
    router = await start_router(config_dir)
    metrics = router.service.metrics

    sent = await _publish_orders(broker, config_dir, 8)

    async def opened() -> bool:
        return _sample(metrics, "mcp_router_circuit_transitions_total",
                       destination=destination, state="open") >= 2  # a probe failed too

    await wait_until(opened)
    assert await broker.count(config_dir.name("billing")) == 2
    delivered = await broker.take(config_dir.name("billing"), 8, timeout=30)

    assert {m.message_id for m in delivered} == sent
    assert await broker.count(config_dir.dead_queue) == 0
    assert _sample(metrics, "mcp_router_copies_total", route="order-created",
                   result="circuit_wait") > 0


async def test_readyz_and_metrics_show_the_breakers(
        broker: Broker, config_dir: ConfigDir, router_process) -> None:
    """A running router reports each breaker's state and reason in /readyz and /metrics."""
    destination = _breaker(config_dir, require_consumers=True, check_every="100ms")
    port = free_port()
    router_process(config_dir, "--http", f"127.0.0.1:{port}")

    async def open_in_readyz() -> bool:
        try:
            status, text = await asyncio.to_thread(http_call, "GET",
                                                   f"http://127.0.0.1:{port}/readyz")
        except OSError:
            return False
        circuit = json.loads(text).get("circuits", {}).get(destination, {})
        return status == 200 and circuit.get("state") == "open"

    await wait_until(open_in_readyz, timeout=30)
    _, text = await asyncio.to_thread(http_call, "GET", f"http://127.0.0.1:{port}/readyz")
    _, exposition = await asyncio.to_thread(http_call, "GET", f"http://127.0.0.1:{port}/metrics")

    circuit = json.loads(text)["circuits"][destination]
    assert circuit["reason"] == f"queue {config_dir.name('billing')!r} has no consumers"
    assert circuit["queues"] == [config_dir.name("billing")]
    assert f'mcp_router_circuit_state{{destination="{destination}"}} 2.0' in exposition
