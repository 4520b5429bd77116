"""Discovery on the real broker: announcements, expiry, routes without consumers, the CLI.

The instances here are announced by hand on the test's own control exchange (the
protocol, as any client could speak it; never the shared ``mcp.control``, where a
running router would hear them); tests/integration/test_e2e.py does it with the SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aio_pika

from router.discovery.registry import (
    PING_KEY,
    Announcement,
    Handles,
    announce_key,
    goodbye,
    goodbye_key,
)
from router.observe.metrics import Metrics
from tests.integration.conftest import (
    AMQP_URL,
    ROOT,
    Broker,
    ConfigDir,
    order_created,
    wait_until,
)


def _instance(directory: ConfigDir, heartbeat: float = 5.0) -> Announcement:
    return Announcement("billing", f"billing-{directory.prefix}", (directory.name("billing"),),
                        (Handles("OrderCreated", (1, 2)),), heartbeat, "test",
                        datetime.now(UTC))


def _control_name(directory: ConfigDir) -> str:
    return str(directory.topology["control"]["exchange"])


async def _control(broker: Broker, directory: ConfigDir) -> aio_pika.abc.AbstractExchange:
    return await broker.channel.declare_exchange(_control_name(directory),
                                                 aio_pika.ExchangeType.TOPIC, durable=True)


async def _announce(broker: Broker, directory: ConfigDir, announcement: Announcement) -> None:
    exchange = await _control(broker, directory)
    await exchange.publish(aio_pika.Message(announcement.encode()),
                           routing_key=announce_key(announcement.name), mandatory=False)


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def _policy(directory: ConfigDir, action: str) -> None:
    (directory.path / "policies" / "unconsumed.yaml").write_text(
        f"unconsumed:\n  - {{match: '*', action: {action}, wait: 50ms, grace: 1ms}}\n")


async def test_announced_instance_appears_and_expires(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """An announcement makes the instance live and its route consumed; silence for three
    heartbeats forgets it and flags the route again."""
    router = await start_router(config_dir)
    service = router.service
    instance = _instance(config_dir, heartbeat=0.2)

    await _announce(broker, config_dir, instance)

    async def listed() -> bool:
        return [s["instance"] for s in service.consumers.listing()["services"]] == \
            [instance.instance]

    await wait_until(listed)
    assert _sample(service.metrics, "mcp_router_route_consumed", route="order-created") == 1
    assert _sample(service.metrics, "mcp_router_service_instances", service="billing") == 1
    assert "big-orders" in service.consumers.unconsumed  # nobody reads the review queue

    async def expired() -> bool:
        return service.consumers.listing()["services"] == []

    await wait_until(expired, timeout=10)
    assert _sample(service.metrics, "mcp_router_route_consumed", route="order-created") == 0
    assert _sample(service.metrics, "mcp_router_service_instances", service="billing") == 0


async def test_goodbye_forgets_an_instance_at_once(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """A clean stop says goodbye; the router does not wait for the heartbeats to lapse."""
    router = await start_router(config_dir)
    instance = _instance(config_dir)
    await _announce(broker, config_dir, instance)
    await wait_until(lambda: _true(router.service.consumers.listing()["services"]))

    exchange = await _control(broker, config_dir)
    await exchange.publish(aio_pika.Message(goodbye(instance.name, instance.instance)),
                           routing_key=goodbye_key(instance.name))

    await wait_until(lambda: _true(not router.service.consumers.listing()["services"]))


async def _true(value: object) -> bool:
    return bool(value)


async def test_unconsumed_route_waits_until_a_consumer_announces(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """With ``action: wait``, a copy for a route nobody consumes waits in the retry tier
    (not in the queue, not dead-lettered) and is delivered once a consumer is live."""
    _policy(config_dir, "wait")
    router = await start_router(config_dir)
    metrics = router.service.metrics
    await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                         message_id="waits")

    async def waited() -> bool:
        value = _sample(metrics, "mcp_router_copies_total", route="order-created",
                        result="consumer_wait")
        return (value or 0) >= 2

    await wait_until(waited)
    assert await broker.count(config_dir.name("billing")) == 0
    await _announce(broker, config_dir, _instance(config_dir))

    [copy] = await broker.take(config_dir.name("billing"), 1, timeout=10)

    assert copy.message_id == "waits"
    assert await broker.count(config_dir.dead_queue) == 0


async def test_unconsumed_route_can_dead_letter_instead(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """With ``action: dead_letter`` the copy is dead-lettered as ``no_consumer``."""
    _policy(config_dir, "dead_letter")
    await start_router(config_dir)  # ready after it started listening: the 1 ms grace is over

    await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                         message_id="nobody")

    [dead] = await broker.take(config_dir.dead_queue, 1)
    assert dead.headers["x-mcp-reason"] == "no_consumer"
    assert dead.headers["x-mcp-route"] == "order-created"


@contextlib.asynccontextmanager
async def _answering(broker: Broker, directory: ConfigDir, instance: Announcement
                     ) -> AsyncIterator[None]:
    """A stand-in service instance that answers pings, as ``router.sdk`` does."""
    channel = await broker.connection.channel()
    exchange = await channel.declare_exchange(_control_name(directory),
                                              aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
    await queue.bind(exchange, PING_KEY)

    async def answer(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        await exchange.publish(aio_pika.Message(instance.encode()),
                               routing_key=announce_key(instance.name))

    await queue.consume(answer)
    try:
        yield
    finally:
        await channel.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", *args],  # noqa: S603 -- our CLI
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
                          env={"MCP_AMQP_URL": AMQP_URL, "PATH": "/usr/bin:/bin"})


async def test_services_and_check_live_ask_the_broker(broker: Broker,
                                                      config_dir: ConfigDir) -> None:
    """``services`` lists an instance that answers the ping; ``check --live`` flags, at its
    line, the route no live instance consumes, and exits 1."""
    instance = _instance(config_dir)
    async with _answering(broker, config_dir, instance):
        listing = await asyncio.to_thread(_cli, "services", "--config", str(config_dir.path),
                                          "--json", "--wait", "1")
        checked = await asyncio.to_thread(_cli, "check", "--config", str(config_dir.path),
                                          "--live", "--wait", "1")

    assert listing.returncode == 0, listing.stderr
    assert instance.instance in [s["instance"] for s in json.loads(listing.stdout)]
    assert checked.returncode == 1
    assert "route 'big-orders': no live service handles OrderCreated from" in checked.stderr
    assert "topology.yaml:" in checked.stderr
    assert "route 'order-created'" not in checked.stderr
