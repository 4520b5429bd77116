"""Faults survived, with a ledger: a counted stream is published while the router or the
broker is hurt, and every message must end up routed or dead-lettered.

Every test here runs against the suite's own throwaway node (``solo``), never the
shared broker: stopping the application, closing every connection and memory alarms
are done to a node nobody else uses.

Each test prints a ``LEDGER`` line: messages in, routed, dead-lettered, duplicated,
lost, the recovery time (fault cleared to routing again) and the time until every
message was accounted for.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import pytest

from router.testing.nodes import Node
from tests.integration.conftest import (
    Broker,
    ConfigDir,
    RunningRouter,
    apply,
    free_port,
    order_created,
    wait_until,
)
from tests.integration.ledger import Ledger, Probe, Row, http_ready, start_row, stop_rows

RATE = 150.0  # messages a second, from before the fault until a second after it
FLOWING = 75  # routed messages (half a second of the stream) before the fault comes
PREFETCH = 64
# Enough broker rounds to outlast every fault below (about 6 s of retrying).
FAULT_RETRIES = """\
retry:
  - match: "*"
    attempts: 2
    backoff: {initial: 5ms, max: 20ms}
    delays: [200ms, 300ms, 500ms, 500ms, 1s, 1s, 1s, 1s, 1s]
"""


@pytest.fixture
def amqp_url(solo_url: str) -> str:
    """Every fault test runs on the throwaway node."""
    return solo_url


@pytest.fixture
async def stream(config_dir: ConfigDir, request: pytest.FixtureRequest,
                 amqp_url: str) -> AsyncIterator[Callable[[], Awaitable[Row]]]:
    """Start the counted stream (and the drainer) on a config with fault-sized retries."""
    (config_dir.path / "policies" / "retry.yaml").write_text(FAULT_RETRIES)
    await apply(config_dir, amqp_url)
    started: list[Row] = []

    async def start() -> Row:
        name = request.node.name.removeprefix("test_")
        started.append(start_row(config_dir, name, [amqp_url], RATE))
        return started[-1]

    yield start
    await stop_rows(started)


def _ready_again(router: RunningRouter) -> Probe:
    """The in-process router lost its session and is ready again."""
    registry = router.service.metrics.registry

    async def probe() -> bool:
        lost = registry.get_sample_value("mcp_router_broker_sessions_lost_total") or 0
        return lost >= 1 and router.service.ready

    return probe


def _routing_again(router: RunningRouter) -> Probe:
    """The in-process router delivered a copy after the fault cleared."""
    registry = router.service.metrics.registry
    labels = {"route": "order-created", "result": "delivered"}
    before = registry.get_sample_value("mcp_router_copies_total", labels) or 0

    async def probe() -> bool:
        return (registry.get_sample_value("mcp_router_copies_total", labels) or 0) > before

    return probe


def _assert_settled(ledger: Ledger, faults: int) -> None:
    assert not ledger.lost, f"{len(ledger.lost)} lost: {sorted(ledger.lost)[:5]}"
    assert ledger.duplicated <= faults * (PREFETCH + 40), ledger.report()


async def test_router_killed_repeatedly(stream, router_process, config_dir: ConfigDir) -> None:
    """kill -9 three times mid-stream: every message routed, duplicates within the windows."""
    flow = await stream()
    port = free_port()
    args = ("--prefetch", str(PREFETCH), "--http", f"127.0.0.1:{port}")
    router = router_process(config_dir, *args)
    cleared = time.monotonic()
    for _ in range(3):
        await asyncio.sleep(1.5)
        router.proc.kill()
        await asyncio.to_thread(router.proc.wait, 10)
        router = router_process(config_dir, *args)
        cleared = time.monotonic()

    ledger = await flow.settle(cleared, http_ready(port))

    _assert_settled(ledger, faults=3)


async def test_broker_restarted(stream, start_router, config_dir: ConfigDir,
                                solo: Node) -> None:
    """stop_app / start_app mid-stream: the router reconnects, nothing is lost."""
    flow = await stream()
    router = await start_router(config_dir, prefetch=PREFETCH, reconnect_delay=0.1,
                                max_reconnect_delay=0.5)
    await flow.flowing(FLOWING)
    try:
        await asyncio.to_thread(solo.ctl, "stop_app")
        await asyncio.sleep(1.0)
    finally:
        cleared = time.monotonic()  # recovery counts the broker's own start-up
        await asyncio.to_thread(solo.ctl, "start_app")
        await asyncio.to_thread(solo.ctl, "await_startup")

    ledger = await flow.settle(cleared, _ready_again(router))

    _assert_settled(ledger, faults=1)


async def test_all_connections_closed_by_the_broker(stream, start_router,
                                                    config_dir: ConfigDir, solo: Node) -> None:
    """close_all_connections mid-stream (the test's own too): everything still arrives."""
    flow = await stream()
    router = await start_router(config_dir, prefetch=PREFETCH, reconnect_delay=0.1,
                                max_reconnect_delay=0.5)
    await flow.flowing(FLOWING)
    await asyncio.to_thread(solo.ctl, "close_all_connections", "fault test")
    cleared = time.monotonic()

    ledger = await flow.settle(cleared, _ready_again(router))

    _assert_settled(ledger, faults=1)


async def test_destination_exchange_deleted_and_recreated(stream, start_router,
                                                          config_dir: ConfigDir,
                                                          amqp_url: str) -> None:
    """The destination exchange vanishes for a second: copies wait in the retry tier."""
    flow = await stream()
    router = await start_router(config_dir, prefetch=PREFETCH)
    await flow.flowing(FLOWING)
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    await channel.exchange_delete(config_dir.name("orders"))
    await asyncio.sleep(1.0)
    await apply(config_dir, amqp_url)  # an operator re-applies the topology
    cleared = time.monotonic()
    await connection.close()

    ledger = await flow.settle(cleared, _routing_again(router))

    _assert_settled(ledger, faults=1)


async def test_memory_alarm_raised_and_cleared(stream, start_router, config_dir: ConfigDir,
                                               solo: Node) -> None:
    """A memory alarm blocks publishing for a while: the router holds, then carries on."""
    flow = await stream()
    router = await start_router(config_dir, prefetch=PREFETCH)
    await flow.flowing(FLOWING)
    try:
        await asyncio.to_thread(solo.memory_alarm, True)
        await asyncio.sleep(3.0)
    finally:
        await asyncio.to_thread(solo.memory_alarm, False)  # back to what the node had
    cleared = time.monotonic()

    ledger = await flow.settle(cleared, _routing_again(router))

    _assert_settled(ledger, faults=1)
    registry = router.service.metrics.registry
    assert (registry.get_sample_value("mcp_router_broker_sessions_lost_total") or 0) == 0


def _close_router_connections(node: Node) -> int:
    """Have the broker close every connection the router opened (by connection name)."""
    closed = 0
    for line in node.ctl("list_connections", "pid", "client_properties").splitlines():
        if "mcp-router consume" in line or "mcp-router publish" in line:
            node.ctl("close_connection", line.split()[0], "test: forced close")
            closed += 1
    return closed


async def _publish_orders(broker: Broker, directory: ConfigDir, n: int) -> list[str]:
    ids = [f"{directory.prefix}-{i}" for i in range(n)]
    body = json.dumps(order_created()).encode()
    await broker.publish_many(directory.ingress,
                              [(body, {"type": "OrderCreated", "message_id": i}) for i in ids])
    return ids


async def test_router_recovers_when_the_broker_closes_its_connections(
        broker: Broker, config_dir: ConfigDir, start_router, solo: Node) -> None:
    """Connections closed by the broker: readiness drops, the router reconnects, nothing lost."""
    router = await start_router(config_dir, reconnect_delay=0.1)
    first = await _publish_orders(broker, config_dir, 300)

    closed = await asyncio.to_thread(_close_router_connections, solo)
    registry = router.service.metrics.registry

    async def reconnected() -> bool:
        lost = registry.get_sample_value("mcp_router_broker_sessions_lost_total") or 0
        return lost >= 1 and router.service.ready

    await wait_until(reconnected, timeout=30)
    second = [f"after-{i}" for i in range(300)]
    body = json.dumps(order_created()).encode()
    await broker.publish_many(config_dir.ingress,
                              [(body, {"type": "OrderCreated", "message_id": i}) for i in second])
    got = await broker.drain_ids(config_dir.name("billing"), [*first, *second])

    assert closed == 2
    assert {m.message_id for m in got} == set(first) | set(second)


async def test_backoff_resets_after_healthy_routing(config_dir: ConfigDir, start_router,
                                                    solo: Node,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Five blips, each after healthy routing: every reconnect waits the initial delay,
    jittered, instead of 1, 2, 4, 8, then 15 s."""
    router = await start_router(config_dir, reconnect_delay=0.4, max_reconnect_delay=15.0,
                                healthy_after=1.0)
    registry = router.service.metrics.registry
    for blip in range(1, 6):
        await asyncio.sleep(1.2)  # healthy for longer than healthy_after
        await asyncio.to_thread(solo.ctl, "close_all_connections", "backoff test")

        async def back(blip: int = blip) -> bool:
            lost = registry.get_sample_value("mcp_router_broker_sessions_lost_total") or 0
            return lost >= blip and router.service.ready

        await wait_until(back, timeout=30)

    waits = [float(r.getMessage().rsplit("reconnecting in ", 1)[1].rstrip("s"))
             for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert len(waits) == 5
    assert all(0.2 <= w <= 0.4 for w in waits), waits  # [1 - jitter, 1] x initial
    assert len(set(waits)) > 1  # jittered, not lockstep
