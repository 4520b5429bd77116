"""Routing strategies on the real broker: least_loaded, weighted, hash, shadows, reload."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika

from router.observe.metrics import Metrics
from router.web.auth import Credentials
from router.web.serve import ConsoleSettings, router_server
from tests.integration.conftest import (
    AMQP_URL,
    Broker,
    ConfigDir,
    example_topology,
    order_created,
    wait_until,
)


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def _split(directory: ConfigDir, *queues: str, exchanges: tuple[str, ...] = (),
           **route: Any) -> None:
    """The example topology plus one exchange, a queue per name bound with that name as
    key, more ``exchanges``, and a route 'split' whose alternatives (unless ``to`` or
    ``alternatives`` are given in ``route``) are those keys.  Written anew each time."""
    t = example_topology(directory.prefix)
    ex = directory.name("split")
    t["exchanges"] += [{"name": name, "type": "topic"} for name in exchanges]
    t["exchanges"].append({"name": ex, "type": "direct"})
    for q in queues:
        t["queues"].append({"name": directory.name(q), "type": "quorum"})
        t["bindings"].append({"exchange": ex, "queue": directory.name(q), "routing_key": q})
    if "to" not in route:
        route.setdefault("alternatives", [{"exchange": ex, "routing_key": q} for q in queues])
    t["routes"] = [{"name": "split", "message_type": "OrderCreated", **route}]
    directory.write(t)


async def _all_routed(router: Any, n: int) -> None:
    """Wait until the router has settled ``n`` messages as routed (before draining)."""
    async def routed() -> bool:
        return _sample(router.service.metrics, "mcp_router_messages_total", outcome="routed",
                       type="OrderCreated") >= n

    await wait_until(routed, timeout=60)


def _bodies(n: int, prefix: str, customer: Any = None) -> list[tuple[bytes, dict[str, Any]]]:
    return [(json.dumps(order_created(customer_id=customer(i) if customer else "c-1")).encode(),
             {"type": "OrderCreated", "message_id": f"{prefix}-{i}"}) for i in range(n)]


class Reader:
    """A consumer of one queue that records message ids; ``delay`` slows each ack."""

    def __init__(self, connection: aio_pika.abc.AbstractConnection, queue: str,
                 delay: float = 0.0, prefetch: int = 50) -> None:
        self.connection, self.queue, self.delay, self.prefetch = connection, queue, delay, \
            prefetch
        self.ids: list[str] = []
        self.channel: aio_pika.abc.AbstractChannel | None = None

    async def start(self) -> Reader:
        self.channel = await self.connection.channel()
        await self.channel.set_qos(prefetch_count=self.prefetch)
        queue = await self.channel.get_queue(self.queue, ensure=False)
        await queue.consume(self._on_message)
        return self

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.ids.append(message.message_id or "")
        await message.ack()

    async def stop(self) -> None:
        if self.channel is not None and not self.channel.is_closed:
            await self.channel.close()


@contextlib.asynccontextmanager
async def readers(broker: Broker, *specs: tuple[str, float, int]) -> AsyncIterator[
        list[Reader]]:
    started = [await Reader(broker.connection, q, d, p).start() for q, d, p in specs]
    try:
        yield started
    finally:
        for reader in started:
            await reader.stop()


async def _seen_with_consumers(router: Any, *queues: str) -> None:
    async def seen() -> bool:
        view = router.service.loads.view(router.service.config,
                                         router.service.current_breakers)
        return all((load := view.loads.get(q)) is not None and load.consumers > 0
                   for q in queues)

    await wait_until(seen, timeout=10)


async def test_least_loaded_prefers_the_fast_consumer_and_skips_one_that_went_away(
        broker: Broker, config_dir: ConfigDir, start_router, tmp_path: Path) -> None:
    """With a slow and a fast consumer most new messages go to the fast one's queue; once
    the fast one's consumer is gone, none go there (and the console's flow panel says so)."""
    _split(config_dir, "slow", "fast", strategy="least_loaded", check_every="100ms")
    router = await start_router(config_dir)
    metrics = router.service.metrics
    slow, fast = config_dir.name("slow"), config_dir.name("fast")
    async with readers(broker, (slow, 0.1, 1), (fast, 0.0, 50)) as (_, fast_reader):
        await _seen_with_consumers(router, slow, fast)
        for i, (body, props) in enumerate(_bodies(150, "a")):  # 100 a second for 1.5 s
            await broker.publish(config_dir.ingress, body, **props)
            if i % 10 == 9:
                await asyncio.sleep(0.1)

        async def routed(n: int) -> bool:
            return _sample(metrics, "mcp_router_messages_total", outcome="routed",
                           type="OrderCreated") >= n

        await wait_until(lambda: routed(150))
        to_fast = _sample(metrics, "mcp_router_branch_copies_total", route="split",
                          branch=f"{config_dir.name('split')}/fast")
        assert to_fast >= 0.7 * 150, f"only {to_fast} of 150 went to the fast consumer"

        await fast_reader.stop()
        await wait_until(lambda: _no_consumer_seen(router, fast), timeout=10)
        # copies the router sent while the reader stopped count, though it never read them
        before = _sample(metrics, "mcp_router_branch_copies_total", route="split",
                         branch=f"{config_dir.name('split')}/fast")
        for body, props in _bodies(40, "b"):
            await broker.publish(config_dir.ingress, body, **props)
        await wait_until(lambda: routed(190))

        after = _sample(metrics, "mcp_router_branch_copies_total", route="split",
                        branch=f"{config_dir.name('split')}/fast")
        assert after == before
        assert _sample(metrics, "mcp_router_branch_skips_total", route="split",
                       branch=f"{config_dir.name('split')}/fast", reason="no_consumer") >= 40
        assert await broker.count(config_dir.dead_queue) == 0
        panel = await _flow_panel(router, tmp_path)
        assert "least_loaded" in panel
        assert f"{config_dir.name('split')}/fast" in panel
        assert "no consumer" in panel


async def _flow_panel(router: Any, tmp_path: Path) -> str:
    """The console's flow panel as the router's --http server serves it."""
    settings = ConsoleSettings(Credentials(None), tmp_path / "audit.jsonl", None)
    server = router_server(router.service, AMQP_URL, settings)
    port = await server.start("127.0.0.1", 0)
    try:
        def get() -> str:
            url = f"http://127.0.0.1:{port}/flow/panel"
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        return await asyncio.to_thread(get)
    finally:
        await server.close()


async def _no_consumer_seen(router: Any, queue: str) -> bool:
    view = router.service.loads.view(router.service.config, router.service.current_breakers)
    load = view.loads.get(queue)
    return load is not None and load.consumers == 0


async def test_weighted_90_10_lands_within_a_few_percent_and_a_key_sticks(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """2,000 customers split 90/10 within 3 points; 50 messages of one customer all take
    one branch."""
    ex = config_dir.name("split")
    _split(config_dir, "big", "small", strategy="weighted", key="message.customer_id",
           alternatives=[{"exchange": ex, "routing_key": "big", "share": 90},
                         {"exchange": ex, "routing_key": "small", "share": 10}])
    router = await start_router(config_dir)
    await broker.publish_many(config_dir.ingress, _bodies(2000, "w", lambda i: f"c-{i}"))
    await broker.publish_many(config_dir.ingress, _bodies(50, "s", lambda _i: "c-sticky"))
    await _all_routed(router, 2050)

    big = await broker.drain_all(config_dir.name("big"))
    small = await broker.drain_all(config_dir.name("small"))

    shares = Counter(m.message_id.split("-")[0] for m in big if m.message_id)
    assert len(big) + len(small) == 2050
    assert abs(shares["w"] / 2000 - 0.9) < 0.03
    sticky = {q for q, got in (("big", big), ("small", small))
              for m in got if (m.message_id or "").startswith("s-")}
    assert len(sticky) == 1


async def test_hash_keeps_each_key_on_one_queue(broker: Broker, config_dir: ConfigDir,
                                                start_router) -> None:
    """300 messages of 20 customers over three queues: each customer's in one queue only."""
    _split(config_dir, "h1", "h2", "h3", strategy="hash", key="message.customer_id")
    router = await start_router(config_dir)
    await broker.publish_many(config_dir.ingress, _bodies(300, "h", lambda i: f"c-{i % 20}"))
    await _all_routed(router, 300)

    where: dict[str, set[str]] = defaultdict(set)
    total = 0
    for q in ("h1", "h2", "h3"):
        for m in await broker.drain_all(config_dir.name(q)):
            where[json.loads(m.body)["customer_id"]].add(q)
            total += 1

    assert total == 300
    assert all(len(queues) == 1 for queues in where.values())
    assert len({q for queues in where.values() for q in queues}) > 1


async def test_a_failing_shadow_never_holds_back_or_dead_letters_the_real_copies(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """One shadow is unroutable, the other's exchange is deleted under the router: every
    real copy arrives on its first attempt, nothing is retried or dead-lettered, and the
    shadows' failures are counted on their own."""
    ex = config_dir.name("split")
    unbound, gone = config_dir.name("unbound"), config_dir.name("gone")
    _split(config_dir, "real", exchanges=(unbound, gone),
           to=[{"exchange": ex, "routing_key": "real"}],
           shadow=[{"exchange": unbound, "routing_key": "x", "name": "unbound"},
                   {"exchange": gone, "routing_key": "x", "name": "gone"}])
    router = await start_router(config_dir)
    metrics = router.service.metrics
    await broker.channel.exchange_delete(gone)

    for body, props in _bodies(50, "r"):
        await broker.publish(config_dir.ingress, body, **props)
    real = await broker.take(config_dir.name("real"), 50, timeout=30)

    async def counted() -> bool:
        return all(_sample(metrics, "mcp_router_shadow_copies_total", route="split",
                           branch=name, result="failed") >= 50 for name in ("unbound", "gone"))

    await wait_until(counted)
    assert {m.message_id for m in real} == {f"r-{i}" for i in range(50)}
    assert all(m.headers.get("x-mcp-shadow") is None for m in real)
    assert _sample(metrics, "mcp_router_copies_total", route="split", result="delivered") == 50
    assert _sample(metrics, "mcp_router_copies_total", route="split",
                   result="retry_scheduled") == 0
    assert _sample(metrics, "mcp_router_publish_retries_total") == 0
    assert await broker.count(config_dir.dead_queue) == 0


async def test_a_shadow_copy_arrives_marked(broker: Broker, config_dir: ConfigDir,
                                            start_router) -> None:
    """A working shadow gets its own copy with x-mcp-shadow and x-mcp-branch."""
    ex = config_dir.name("split")
    _split(config_dir, "real", "next", to=[{"exchange": ex, "routing_key": "real"}],
           shadow=[{"exchange": ex, "routing_key": "next", "name": "next"}])
    await start_router(config_dir)

    await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                         message_id="one")
    [real] = await broker.take(config_dir.name("real"), 1)
    [shadow] = await broker.take(config_dir.name("next"), 1)

    assert shadow.headers["x-mcp-shadow"] is True
    assert shadow.headers["x-mcp-branch"] == "next"
    assert shadow.body == real.body


async def test_a_weight_change_under_load_loses_nothing_and_duplicates_nothing(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """1,500 messages stream while reloads turn 50/50 into 10/90 and then into a hash by
    customer: each message reaches exactly one of the two queues, once, none is
    dead-lettered, and the last configuration is the one in force."""
    ex = config_dir.name("split")
    left, right = {"exchange": ex, "routing_key": "left"}, \
        {"exchange": ex, "routing_key": "right"}

    def weighted(a: int, b: int) -> dict[str, Any]:
        return {"strategy": "weighted",
                "alternatives": [{**left, "share": a}, {**right, "share": b}]}

    _split(config_dir, "left", "right", **weighted(50, 50))
    router = await start_router(config_dir)
    sent = _bodies(1500, "m", lambda i: f"c-{i % 40}")

    async def stream() -> None:
        for chunk in range(0, 1500, 100):
            await broker.publish_many(config_dir.ingress, sent[chunk:chunk + 100])
            await asyncio.sleep(0.05)

    task = asyncio.create_task(stream())
    for route in (weighted(10, 90), {"strategy": "hash", "key": "message.customer_id",
                                     "alternatives": [left, right]}):
        await asyncio.sleep(0.4)
        _split(config_dir, "left", "right", **route)
        result = await router.service.reload()
        assert result.ok, result.problems
    await task
    await _all_routed(router, 1500)

    got = [*await broker.drain_all(config_dir.name("left")),
           *await broker.drain_all(config_dir.name("right"))]
    ids = [m.message_id for m in got]

    assert len(ids) == len(set(ids)) == 1500
    assert set(ids) == {props["message_id"] for _, props in sent}
    assert await broker.count(config_dir.dead_queue) == 0
    [split] = router.service.config.topology.routes
    assert split.choice is not None
    assert split.choice.strategy.value == "hash"


async def test_a_retried_copy_stays_on_its_branch(broker: Broker, config_dir: ConfigDir,
                                                 start_router) -> None:
    """One branch's queue refuses every copy: those copies go through the retry tier and
    are dead-lettered from that branch, never re-chosen onto the other one."""
    _split(config_dir, "ok", "full", strategy="weighted")
    full = next(q for q in config_dir.topology["queues"] if q["name"] == config_dir.name("full"))
    full.update(type="classic", arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    config_dir.write(config_dir.topology)
    await start_router(config_dir)
    await broker.publish_many(config_dir.ingress, _bodies(40, "r"))

    async def all_settled() -> bool:  # each message takes one branch: routed or dead
        return await broker.count(config_dir.name("ok")) + \
            await broker.count(config_dir.dead_queue) >= 40

    await wait_until(all_settled)
    ok = await broker.drain_all(config_dir.name("ok"))
    dead = await broker.take(config_dir.dead_queue, 40 - len(ok), timeout=30)

    assert ok
    assert {m.message_id for m in ok}.isdisjoint({m.message_id for m in dead})
    assert {m.headers["x-mcp-destination-routing-key"] for m in dead} == {"full"}
    assert {m.headers["x-mcp-reason"] for m in dead} == {"retries_exhausted"}
    assert all(m.headers["x-mcp-attempts"] == 6 for m in dead)
