"""A fault row on its own throwaway node: the broker's consumer timeout.

The node's ``consumer_timeout`` is 2 s (checked every 500 ms).  A memory alarm blocks
publishing for 5 s, so the router holds its deliveries past the timeout; the broker
closes the consuming channel, the router starts a new session, and nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from router.testing.nodes import Node
from tests.integration.conftest import IMPATIENT, Broker, ConfigDir, order_created
from tests.integration.ledger import PREFETCH, confirmed_again

BURST_LIMIT = 30_000  # messages: the alarm takes seconds to come up (rabbitmqctl starts)


@pytest.fixture(scope="module")
def impatient(rabbitmq_node_factory: Any) -> Node:
    """A node whose consumer timeout is 2 s, checked every 500 ms (conftest's IMPATIENT)."""
    name, options = IMPATIENT
    node: Node = rabbitmq_node_factory(name, **options)
    return node


@pytest.fixture
def amqp_url(impatient: Node) -> str:
    return impatient.url


async def test_consumer_timeout_closes_the_channel(ledger_row, start_router, impatient: Node,
                                                   config_dir: ConfigDir, broker: Broker) -> None:
    """Deliveries held past consumer_timeout: the channel is closed, the router recovers."""
    router = await start_router(config_dir, reconnect_delay=0.2, max_reconnect_delay=1.0,
                                prefetch=PREFETCH)
    row = await ledger_row("consumer timeout (2 s; deliveries held 5 s)")
    await row.flowing()
    # The alarm is asked for first (rabbitmqctl takes a second or two to start) and the
    # burst published meanwhile, 500 at a time until the alarm is up, so the router is
    # still taking it when publishing blocks and holds deliveries however fast it routes.
    # The test's own publishes block too: the rest of the burst goes out once the alarm
    # clears, and is counted like the rest.
    burst: list[str] = []
    body = json.dumps(order_created()).encode()
    alarm = asyncio.create_task(asyncio.to_thread(impatient.memory_alarm, True))

    async def send_until_alarm() -> None:
        while not alarm.done() and len(burst) < BURST_LIMIT:
            ids = [f"{config_dir.prefix}-burst-{len(burst) + i}" for i in range(500)]
            burst.extend(ids)
            await broker.publish_many(config_dir.ingress, [
                (body, {"type": "OrderCreated", "message_id": i}) for i in ids])

    sending = asyncio.create_task(send_until_alarm())
    try:
        await alarm
        await asyncio.sleep(5.0)
    finally:
        await asyncio.to_thread(impatient.memory_alarm, False)
    # Recovery counts from here: the router's copies, not the test's burst, still going out.
    cleared, routing = time.monotonic(), confirmed_again(router)
    await sending

    await row.finish(cleared, kills=2, routing=routing, also_sent=burst)
    lost = router.service.metrics.registry.get_sample_value(
        "mcp_router_broker_sessions_lost_total") or 0
    assert lost >= 1  # the closed channel ended a session
