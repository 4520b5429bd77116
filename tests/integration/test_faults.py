"""Faults survived, with a ledger: a counted stream is published while the router or the
broker is hurt, and every message must end up routed or dead-lettered.

Each test prints a ``LEDGER`` line: messages in, routed, dead-lettered, duplicated,
lost, the recovery time (fault cleared to routing again) and the time until every
message was accounted for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aio_pika
import pytest

from tests.integration.conftest import (
    AMQP_URL,
    ConfigDir,
    RunningRouter,
    apply,
    free_port,
    order_created,
    rabbitmqctl,
)
from tests.integration.ledger import Drainer, Ledger, LedgerPublisher, Probe

COUNT, RATE = 1200, 150.0  # about 8 s of traffic
PREFETCH = 64
# Enough broker rounds to outlast every fault below (about 6 s of retrying).
FAULT_RETRIES = """\
retry:
  - match: "*"
    attempts: 2
    backoff: {initial: 5ms, max: 20ms}
    delays: [200ms, 300ms, 500ms, 500ms, 1s, 1s, 1s, 1s, 1s]
"""


@dataclass
class Stream:
    ledger: Ledger
    publisher: LedgerPublisher
    drainer: Drainer
    tasks: list[asyncio.Task[None]]

    async def published(self) -> None:
        await self.tasks[0]
        self.ledger.sent = self.publisher.confirmed

    async def settle(self, cleared_at: float, recovered: Probe) -> Ledger:
        await self.drainer.recover(cleared_at, recovered)
        await self.published()
        ledger = await self.drainer.settle(cleared_at)
        await self.tasks[1]
        print(ledger.report())
        return ledger


@pytest.fixture
async def stream(config_dir: ConfigDir, request: pytest.FixtureRequest) -> AsyncIterator[
        Callable[[], Awaitable[Stream]]]:
    """Start the counted stream (and the drainer) on a config with fault-sized retries."""
    (config_dir.path / "policies" / "retry.yaml").write_text(FAULT_RETRIES)
    await apply(config_dir)
    started: list[Stream] = []

    async def start() -> Stream:
        ledger = Ledger(request.node.name.removeprefix("test_"))
        publisher = LedgerPublisher(config_dir.ingress, config_dir.prefix,
                                    json.dumps(order_created()).encode(), "OrderCreated")
        drainer = Drainer(ledger, config_dir.name("billing"), config_dir.dead_queue)
        tasks = [asyncio.create_task(publisher.run(COUNT, RATE)),
                 asyncio.create_task(drainer.run())]
        started.append(Stream(ledger, publisher, drainer, tasks))
        return started[-1]

    yield start
    for s in started:
        for task in s.tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


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


def _http_ready(port: int) -> Probe:
    """A router process answers 200 on /readyz."""

    def get() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    async def probe() -> bool:
        return await asyncio.to_thread(get)

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

    ledger = await flow.settle(cleared, _http_ready(port))

    _assert_settled(ledger, faults=3)


async def test_broker_restarted(stream, start_router, config_dir: ConfigDir) -> None:
    """stop_app / start_app mid-stream: the router reconnects, nothing is lost."""
    flow = await stream()
    router = await start_router(config_dir, prefetch=PREFETCH, reconnect_delay=0.1,
                                max_reconnect_delay=0.5)
    await asyncio.sleep(2.0)
    try:
        await asyncio.to_thread(rabbitmqctl, "stop_app")
        await asyncio.sleep(1.0)
    finally:
        cleared = time.monotonic()  # recovery counts the broker's own start-up
        await asyncio.to_thread(rabbitmqctl, "start_app")
        await asyncio.to_thread(rabbitmqctl, "await_startup")

    ledger = await flow.settle(cleared, _ready_again(router))

    _assert_settled(ledger, faults=1)


async def test_all_connections_closed_by_the_broker(stream, start_router,
                                                    config_dir: ConfigDir) -> None:
    """close_all_connections mid-stream (the test's own too): everything still arrives."""
    flow = await stream()
    router = await start_router(config_dir, prefetch=PREFETCH, reconnect_delay=0.1,
                                max_reconnect_delay=0.5)
    await asyncio.sleep(2.0)
    await asyncio.to_thread(rabbitmqctl, "close_all_connections", "fault test")
    cleared = time.monotonic()

    ledger = await flow.settle(cleared, _ready_again(router))

    _assert_settled(ledger, faults=1)


async def test_destination_exchange_deleted_and_recreated(stream, start_router,
                                                          config_dir: ConfigDir) -> None:
    """The destination exchange vanishes for a second: copies wait in the retry tier."""
    flow = await stream()
    router = await start_router(config_dir, prefetch=PREFETCH)
    await asyncio.sleep(2.0)
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.exchange_delete(config_dir.name("orders"))
    await asyncio.sleep(1.0)
    await apply(config_dir)  # an operator re-applies the topology
    cleared = time.monotonic()
    await connection.close()

    ledger = await flow.settle(cleared, _routing_again(router))

    _assert_settled(ledger, faults=1)


async def test_memory_alarm_raised_and_cleared(stream, start_router,
                                               config_dir: ConfigDir) -> None:
    """A memory alarm blocks publishing for a while: the router holds, then carries on."""
    flow = await stream()
    router = await start_router(config_dir, prefetch=PREFETCH)
    await asyncio.sleep(2.0)
    try:
        await asyncio.to_thread(rabbitmqctl, "set_vm_memory_high_watermark", "absolute", "1")
        await asyncio.sleep(3.0)
    finally:
        await asyncio.to_thread(rabbitmqctl, "set_vm_memory_high_watermark", "0.4")
    cleared = time.monotonic()

    ledger = await flow.settle(cleared, _routing_again(router))

    _assert_settled(ledger, faults=1)
    registry = router.service.metrics.registry
    assert (registry.get_sample_value("mcp_router_broker_sessions_lost_total") or 0) == 0
