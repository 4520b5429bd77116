"""Both retry tiers on the real broker: parked copies come back, survive restarts, and
only the router's own retries are believed."""

from __future__ import annotations

import json

import aio_pika

from router.core import pipeline
from tests.integration.conftest import (
    AMQP_URL,
    Broker,
    ConfigDir,
    RunningRouter,
    apply,
    order_created,
    wait_until,
)
from tests.integration.ledger import Probe

PAID = {"order_id": "6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11", "status": "paid"}
SLOW_RETRIES = """\
retry:
  - match: "*"
    attempts: 1
    delays: [300ms, 300ms, 300ms, 300ms, 300ms, 300ms, 300ms, 300ms, 300ms, 300ms]
"""


async def _bind_nowhere(broker: Broker, directory: ConfigDir) -> str:
    """Give the route that had no queue one: a queue bound to the 'nowhere' exchange."""
    directory.extra_queues.append(directory.name("late"))
    channel = await broker.connection.channel()
    queue = await channel.declare_queue(directory.name("late"), durable=True,
                                        arguments={"x-queue-type": "quorum"})
    await queue.bind(directory.name("nowhere"), "x")
    await channel.close()
    return queue.name


def _slow_retries(directory: ConfigDir) -> None:
    (directory.path / "policies" / "retry.yaml").write_text(SLOW_RETRIES)


def _parked(router: RunningRouter) -> Probe:
    """The router has parked the unroutable copy in a retry queue."""
    registry = router.service.metrics.registry

    async def probe() -> bool:
        value = registry.get_sample_value(
            "mcp_router_copies_total", {"route": "updates-nowhere", "result": "retry_scheduled"})
        return (value or 0) >= 1

    return probe


async def test_copy_is_delivered_once_its_destination_becomes_routable(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """An unroutable copy waits in the retry queue; when a queue is bound it is delivered,
    looking exactly like a first delivery."""
    _slow_retries(config_dir)
    router = await start_router(config_dir)
    await broker.publish(config_dir.ingress, PAID, type="OrderUpdated", message_id="late-1",
                         user_id="guest", headers={"x-tenant": "acme"})
    await wait_until(_parked(router), timeout=10)
    late = await _bind_nowhere(broker, config_dir)
    [copy] = await broker.take(late, 1, timeout=10)

    assert copy.message_id == "late-1"
    assert json.loads(copy.body) == PAID
    assert copy.user_id is None
    assert copy.headers["x-mcp-publisher"] == "guest"
    assert copy.headers["x-mcp-route"] == "updates-nowhere"
    assert copy.headers["x-tenant"] == "acme"
    assert not [h for h in copy.headers if h.startswith(("x-mcp-retry", "x-death", "x-first"))]
    assert await broker.count(config_dir.dead_queue) == 0


async def test_parked_retry_survives_a_router_restart(broker: Broker, config_dir: ConfigDir,
                                                      start_router) -> None:
    """A copy parked on the broker is delivered by the next router after a restart."""
    _slow_retries(config_dir)
    router = await start_router(config_dir)
    await broker.publish(config_dir.ingress, PAID, type="OrderUpdated", message_id="restart-1")
    await wait_until(_parked(router), timeout=10)
    await router.close()
    late = await _bind_nowhere(broker, config_dir)
    await start_router(config_dir)
    [copy] = await broker.take(late, 1, timeout=10)

    assert copy.message_id == "restart-1"


async def test_poison_message_ends_in_the_dead_letter_queue(
        broker: Broker, config_dir: ConfigDir, start_router, monkeypatch) -> None:
    """A message that crashes the router every time is dead-lettered by the ingress queue's
    delivery limit; the messages around it still flow."""
    real_decide = pipeline.decide

    def crashing_decide(envelope, config, *rest, **named):  # type: ignore[no-untyped-def]
        if envelope.properties.message_id == "poison":
            raise RuntimeError("a bug triggered by this message")
        return real_decide(envelope, config, *rest, **named)

    monkeypatch.setattr("router.core.sealing.decide", crashing_decide)  # the stage service calls
    await start_router(config_dir)
    for message_id in ("before", "poison", "after"):
        await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                             message_id=message_id)

    routed = await broker.take(config_dir.name("billing"), 2)
    [dead] = await broker.take(config_dir.dead_queue, 1, timeout=20)

    assert {m.message_id for m in routed} == {"before", "after"}
    assert dead.message_id == "poison"
    assert dead.headers["x-death"][0]["reason"] == "delivery_limit"


async def test_retry_headers_from_another_user_are_not_believed(
        broker: Broker, config_dir: ConfigDir, start_router, other_user) -> None:
    """A publisher cannot forge a retry: its message is routed to every route as usual."""
    name, password = other_user
    await start_router(config_dir)
    forged = {"x-mcp-retry-route": "order-created", "x-mcp-retry-exchange": "x",
              "x-mcp-retry-routing-key": "y", "x-mcp-attempts": 1, "x-mcp-retries": 1}
    connection = await aio_pika.connect(AMQP_URL.replace("guest:guest@", f"{name}:{password}@"))
    try:
        await broker.publish(config_dir.ingress, order_created(5000.0), type="OrderCreated",
                             user_id=name, message_id="forged", headers=forged,
                             connection=connection)
    finally:
        await connection.close()

    [billing] = await broker.take(config_dir.name("billing"), 1)
    [review] = await broker.take(config_dir.name("review"), 1)

    assert billing.message_id == review.message_id == "forged"
    assert "x-mcp-retry-route" not in billing.headers


async def test_apply_declares_one_retry_queue_per_delay(broker: Broker,
                                                        config_dir: ConfigDir) -> None:
    """The broker tier's TTL queues exist after apply, named after their delay."""
    declared = await apply(config_dir)

    assert f"queue {config_dir.ingress_queue}.retry.50ms (quorum)" in declared
    assert f"queue {config_dir.ingress_queue}.retry.100ms (quorum)" in declared
    assert any(".retry.1000ms" in d for d in declared)  # the default policy's delays too
