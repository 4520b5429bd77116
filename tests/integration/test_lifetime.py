"""The router process: health endpoints, SIGTERM drain, kill -9 loses nothing."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter

from router.observe.metrics import Metrics
from router.runtime.http import HealthServer
from router.runtime.service import RouterService, Settings
from tests.integration.conftest import (
    Broker,
    ConfigDir,
    apply,
    http_call,
    order_created,
    wait_until,
)


def _get(url: str) -> tuple[int, str]:
    return http_call("GET", url)


async def _publish_orders(broker: Broker, directory: ConfigDir, n: int) -> list[str]:
    ids = [f"{directory.prefix}-{i}" for i in range(n)]
    body = json.dumps(order_created()).encode()
    await broker.publish_many(directory.ingress,
                              [(body, {"type": "OrderCreated", "message_id": i}) for i in ids])
    return ids


async def test_health_endpoints_follow_the_broker_connection(config_dir: ConfigDir,
                                                             start_router) -> None:
    """/healthz is always ok; /readyz is 200 once routing and 503 without a broker."""
    router = await start_router(config_dir)
    health = HealthServer(lambda: (router.service.ready, {}), router.service.metrics.render)
    port = await health.start("127.0.0.1", 0)
    down = RouterService(config_dir.load(), Settings("amqp://guest:guest@127.0.0.1:1/"), Metrics())
    down_health = HealthServer(lambda: (down.ready, {}), down.metrics.render)
    down_port = await down_health.start("127.0.0.1", 0)
    try:
        live = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/healthz")
        ready = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz")
        metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        not_ready = await asyncio.to_thread(_get, f"http://127.0.0.1:{down_port}/readyz")
        missing = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/nope")
    finally:
        await health.close()
        await down_health.close()

    assert live == (200, "ok\n")
    assert ready[0] == 200
    assert json.loads(ready[1])["ready"] is True
    assert metrics[0] == 200
    assert "mcp_router_broker_connected 1.0" in metrics[1]
    assert not_ready[0] == 503
    assert missing[0] == 404


async def test_sigterm_drains_in_flight_work_and_exits_zero(
        broker: Broker, config_dir: ConfigDir, router_process) -> None:
    """SIGTERM mid-stream: exit 0, every message either routed once or still queued."""
    await apply(config_dir)
    ids = await _publish_orders(broker, config_dir, 3000)
    router = router_process(config_dir, "--prefetch", "256")
    billing = config_dir.name("billing")

    async def started() -> bool:
        return await broker.count(billing) >= 300

    await wait_until(started)
    router.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(router.proc.wait, 30)
    routed = await broker.drain_all(billing)  # confirmed before the router acked
    # What the router held went back to the ingress when its connection closed: once
    # every id not routed is back, anything else there came back with them.
    left = await broker.drain_ids(config_dir.ingress_queue,
                                  set(ids) - {m.message_id for m in routed})
    left += await broker.drain_all(config_dir.ingress_queue)

    assert code == 0, router.output()
    assert "drained" in router.output()
    routed_ids = Counter(m.message_id for m in routed)
    left_ids = Counter(m.message_id for m in left)
    assert max(routed_ids.values()) == 1  # nothing routed twice
    assert not set(routed_ids) & set(left_ids)  # nothing routed and also requeued
    assert set(routed_ids) | set(left_ids) == set(ids)


async def test_kill_9_at_any_moment_loses_nothing(broker: Broker, config_dir: ConfigDir,
                                                  router_process) -> None:
    """Killed twice mid-stream with thousands in flight, every message id still arrives."""
    await apply(config_dir)
    ids = await _publish_orders(broker, config_dir, 4000)
    billing = config_dir.name("billing")
    seen: Counter[str] = Counter()

    for threshold in (500, 1500):
        router = router_process(config_dir, "--prefetch", "512")

        async def reached(threshold: int = threshold) -> bool:
            return len(seen) + await broker.count(billing) >= threshold

        await wait_until(reached, timeout=60)
        router.proc.kill()
        await asyncio.to_thread(router.proc.wait, 10)
        seen.update(m.message_id for m in await broker.drain_all(billing))

    final = router_process(config_dir)

    async def all_arrived() -> bool:  # one consumer all along, while the router routes
        seen.update(m.message_id for m in await broker.drain(billing, idle=0.3, timeout=5))
        return set(seen) >= set(ids)

    await wait_until(all_arrived, timeout=120)
    final.proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(final.proc.wait, 30)

    assert set(seen) == set(ids)
    assert await broker.count(config_dir.dead_queue) == 0
    duplicates = sum(seen.values()) - len(ids)
    print(f"kill -9 x2: {len(ids)} in, {len(seen)} routed, {duplicates} duplicates")
