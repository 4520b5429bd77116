"""Several router replicas on one configuration: competing consumers, and what each keeps.

Each replica keeps its own rate-limit buckets (unless a rule is ``shared``: then they
live in Redis), its own circuit breakers and its own discovery registry.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from datetime import UTC, datetime

import aio_pika
import pytest
import redis

from router.discovery.registry import Announcement, Handles, announce_key
from router.runtime.sharedlimit import RateLimiter
from tests.integration.conftest import Broker, ConfigDir, order_created, wait_until

REDIS_URL = os.environ.get("MCP_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    """Redis for shared rate limits (fails under CI, skips elsewhere, when it is not up)."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


def _rate_policy(directory: ConfigDir, *, shared: bool) -> None:
    (directory.path / "policies" / "rates.yaml").write_text(
        "rate_limits:\n  - {match: 'Order*', rate: 10/s, burst: 10, per: global, "
        f"on_excess: reject, shared: {'true' if shared else 'false'}}}\n")


async def _stream(broker: Broker, directory: ConfigDir, count: int, rate: float) -> float:
    """Publish ``count`` orders at ``rate``/s; returns how long that took."""
    body = json.dumps(order_created()).encode()
    started = time.monotonic()
    for i in range(count):
        await broker.publish(directory.ingress, body, type="OrderCreated", message_id=f"m-{i}")
        ahead = started + (i + 1) / rate - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
    return time.monotonic() - started


async def _rate_limited_run(broker: Broker, config_dir: ConfigDir, start_router,
                            **settings: object) -> tuple[int, float, list[float]]:
    """Two replicas, 120 orders at 40/s: how many were routed, in how long, by whom."""
    replicas = [await start_router(config_dir, prefetch=4, **settings) for _ in range(2)]
    elapsed = await _stream(broker, config_dir, 120, 40.0)

    async def settled() -> bool:
        return await broker.count(config_dir.name("billing")) \
            + await broker.count(config_dir.dead_queue) >= 120

    await wait_until(settled)
    routed = await broker.count(config_dir.name("billing"))
    per_replica = [sum(r.service.metrics.registry.get_sample_value(
        "mcp_router_messages_total", {"outcome": outcome, "type": "OrderCreated"}) or 0
        for outcome in ("routed", "dead_lettered")) for r in replicas]
    return routed, elapsed, per_replica


async def test_a_shared_rate_limit_holds_across_replicas(
        broker: Broker, config_dir: ConfigDir, start_router, redis_url: str) -> None:
    """Two replicas with a shared 10/s rule pass about 10 a second between them, not 20."""
    _rate_policy(config_dir, shared=True)

    routed, elapsed, per_replica = await _rate_limited_run(broker, config_dir, start_router,
                                                           redis_url=redis_url)

    assert all(n > 0 for n in per_replica), per_replica  # both replicas took deliveries
    allowed = 10 + 10 * elapsed  # the burst, then 10 a second
    assert allowed * 0.7 <= routed <= allowed + 5, (routed, elapsed)


async def test_a_local_rate_limit_is_per_replica(broker: Broker, config_dir: ConfigDir,
                                                 start_router) -> None:
    """Without ``shared`` each replica has its own buckets: two pass well over the rate."""
    _rate_policy(config_dir, shared=False)

    routed, elapsed, _ = await _rate_limited_run(broker, config_dir, start_router)

    assert routed > 10 + 10 * elapsed + 5, (routed, elapsed)


async def test_replicas_compete_for_the_ingress(broker: Broker, config_dir: ConfigDir,
                                                start_router) -> None:
    """Three replicas share the ingress queue: each message is routed once, by one of them."""
    replicas = [await start_router(config_dir, prefetch=8) for _ in range(3)]
    ids = [f"c-{i}" for i in range(300)]
    body = json.dumps(order_created()).encode()
    await broker.publish_many(config_dir.ingress,
                              [(body, {"type": "OrderCreated", "message_id": i}) for i in ids])

    got = await broker.take(config_dir.name("billing"), 300, timeout=30)

    assert Counter(m.message_id for m in got) == Counter(ids)
    shares = [r.service.metrics.registry.get_sample_value(
        "mcp_router_messages_total", {"outcome": "routed", "type": "OrderCreated"}) or 0
        for r in replicas]
    assert sum(shares) == 300
    assert all(share > 0 for share in shares), shares


async def test_each_replica_keeps_its_own_breakers(broker: Broker, config_dir: ConfigDir,
                                                   start_router) -> None:
    """A refused copy opens the breaker only in the replica that saw it refused."""
    nowhere = config_dir.name("nowhere")
    (config_dir.path / "policies" / "breakers.yaml").write_text(json.dumps(
        {"circuit_breakers": [{"exchange": nowhere, "failures": 1, "open_for": "1m"}]}))
    replicas = [await start_router(config_dir, prefetch=1) for _ in range(2)]

    update = {"order_id": order_created()["order_id"], "status": "paid"}
    await broker.publish(config_dir.ingress, update, type="OrderUpdated",
                         message_id="refused")

    async def one_open() -> bool:
        states = [r.service.circuits()[f"{nowhere}/x"]["state"] for r in replicas]
        return sorted(states) == ["closed", "open"]

    await wait_until(one_open, timeout=15)


async def test_each_replica_hears_the_services_itself(broker: Broker, config_dir: ConfigDir,
                                                      start_router) -> None:
    """One announcement reaches every replica's own registry (each has its own queue)."""
    replicas = [await start_router(config_dir) for _ in range(2)]
    control = str(config_dir.topology["control"]["exchange"])
    instance = Announcement("billing", f"billing-{config_dir.prefix}",
                            (config_dir.name("billing"),), (Handles("OrderCreated", ()),), 30.0,
                            "test", datetime.now(UTC))
    exchange = await broker.channel.get_exchange(control, ensure=False)
    await exchange.publish(aio_pika.Message(instance.encode()),
                           routing_key=announce_key(instance.name), mandatory=False)

    async def both_heard() -> bool:
        return all([s["instance"] for s in r.service.consumers.listing()["services"]]
                   == [instance.instance] for r in replicas)

    await wait_until(both_heard, timeout=10)


async def test_a_shared_rule_falls_back_to_the_replica_when_redis_is_down(
        config_dir: ConfigDir, caplog: pytest.LogCaptureFixture) -> None:
    """With Redis unreachable a shared rule is applied by the replica alone, and said once."""
    _rate_policy(config_dir, shared=True)
    limiter = RateLimiter("ns", "redis://127.0.0.1:1/0")
    limiter.configure(config_dir.load().policies.rate_limits)

    verdicts = [await limiter.take(None, "OrderCreated") for _ in range(12)]
    await limiter.close()

    assert verdicts[:10] == [None] * 10  # the local bucket's burst
    assert all(v is not None and v.shared for v in verdicts[10:])
    warnings = [r for r in caplog.records if "Redis does not answer" in r.getMessage()]
    assert len(warnings) == 1
