"""router.sdk against the real broker and an in-process router: publish, handle, retry,
dead-letter, deduplicate, announce."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import pytest

from router.config.policies import RetryPolicy
from router.sdk import (
    Context,
    Idempotency,
    InMemoryIdempotency,
    InvalidMessage,
    PermanentError,
    RedisIdempotency,
    Service,
    ServicePublisher,
)
from router.sdk.idempotency import Claimed, Seen
from router.sdk.service import MissingQueue
from tests.integration.conftest import (
    AMQP_URL,
    ROOT,
    Broker,
    ConfigDir,
    apply,
    order_created,
    wait_until,
)

REDIS_URL = os.environ.get("MCP_REDIS_URL", "redis://127.0.0.1:6379/0")
# Millisecond tiers: 2 quick calls, then 2 broker rounds (50 ms, 100 ms): 6 calls in all.
FAST = RetryPolicy(attempts=2, initial=0.001, max=0.001, delays=(0.05, 0.1))


async def _no_wait(seconds: float) -> None:
    await asyncio.sleep(min(seconds, 0.01))


@pytest.fixture
async def make_service(config_dir: ConfigDir, broker: Broker
                       ) -> AsyncIterator[Callable[..., Service]]:
    """Services on the test's billing queue with a test-unique control exchange;
    their retry queues and control exchange are deleted afterwards."""
    made: list[Service] = []

    def make(**options: Any) -> Service:
        options.setdefault("queue", config_dir.name("billing"))
        options.setdefault("retry", FAST)
        options.setdefault("control_exchange", config_dir.name("control"))
        options.setdefault("sleep", _no_wait)
        config = config_dir.load()
        service = Service.from_config(options.pop("name", "billing"), config, **options)
        made.append(service)
        return service

    yield make
    queues = [q for s in made for queue in s.queues for q in s.retry_queues(queue)]
    await broker.delete([config_dir.name("control")], queues)


@pytest.fixture
async def connection() -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    conn = await aio_pika.connect(AMQP_URL)
    try:
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _redis_store() -> AsyncIterator[RedisIdempotency]:
    """Idempotency in the real Redis under a test-unique prefix, deleted afterwards."""
    prefix = f"mcp-test:{uuid.uuid4().hex[:10]}:"
    store = RedisIdempotency.from_url(REDIS_URL, prefix=prefix)
    try:
        await store.client.ping()
    except Exception as exc:  # noqa: BLE001 -- reported as a skip (or a failure under CI)
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    try:
        yield store
    finally:
        keys = [k async for k in store.client.scan_iter(match=prefix + "*")]
        if keys:
            await store.client.delete(*keys)
        await store.close()


@pytest.fixture
async def redis_store() -> AsyncIterator[RedisIdempotency]:
    async with _redis_store() as store:
        yield store


@pytest.fixture(params=["memory", "redis"])
async def idempotency(request: pytest.FixtureRequest) -> AsyncIterator[Idempotency]:
    """Each idempotency store: in memory, and in the real Redis."""
    if request.param == "memory":
        yield InMemoryIdempotency()
        return
    async with _redis_store() as store:
        yield store


async def _dead_letters(broker: Broker, config_dir: ConfigDir, n: int
                        ) -> list[aio_pika.abc.AbstractIncomingMessage]:
    return await broker.take(config_dir.dead_queue, n)


async def test_a_published_message_reaches_its_handler_through_the_router(
        config_dir: ConfigDir, start_router: Any, make_service: Any,
        connection: aio_pika.abc.AbstractConnection) -> None:
    """Publisher → router → handler: body, version, message id, publisher and route."""
    await start_router(config_dir)
    service = make_service()
    seen: list[tuple[Any, Context]] = []

    @service.handler("OrderCreated", versions=[1, 2])
    async def on_created(order: Any, ctx: Context) -> None:
        seen.append((order, ctx))

    order = order_created()
    async with service.running(connection):
        publisher = await ServicePublisher.open(connection, config_dir.ingress)
        message_id = await publisher.publish("OrderCreated", order, version=2)

        async def handled() -> bool:
            return bool(seen)

        await wait_until(handled, timeout=10)

    [(body, ctx)] = seen
    assert body == order
    assert (ctx.message_id, ctx.message_type, ctx.version, ctx.attempt) == \
        (message_id, "OrderCreated", 2, 1)
    assert (ctx.publisher, ctx.route, ctx.queue) == \
        ("guest", "order-created", config_dir.name("billing"))


async def test_the_publisher_refuses_a_body_its_schema_rejects(
        config_dir: ConfigDir, broker: Broker) -> None:
    """With a registry, an invalid body raises InvalidMessage and nothing is published."""
    publisher = await ServicePublisher.open(broker.connection, config_dir.ingress,
                                            registry=config_dir.load().registry)

    with pytest.raises(InvalidMessage, match="schema_invalid: OrderCreated v2: /total_amount"):
        await publisher.publish("OrderCreated", order_created(total="lots"), version=2)


async def test_no_more_handlers_run_at_once_than_the_concurrency_limit(
        config_dir: ConfigDir, start_router: Any, make_service: Any, broker: Broker,
        connection: aio_pika.abc.AbstractConnection) -> None:
    """With concurrency 2, six messages are handled two at a time, all of them."""
    await start_router(config_dir)
    service = make_service(concurrency=2)
    running, most, done = 0, 0, []
    release = asyncio.Event()

    @service.handler("OrderCreated")
    async def on_created(order: Any, ctx: Context) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        done.append(ctx.message_id)

    async with service.running(connection):
        publisher = await ServicePublisher.open(connection, config_dir.ingress)
        for _ in range(6):
            await publisher.publish("OrderCreated", order_created(), version=2)

        async def two_running() -> bool:
            return running == 2

        await wait_until(two_running, timeout=10)
        await asyncio.sleep(0.2)  # would a third start? (it must not)
        release.set()

        async def all_done() -> bool:
            return len(done) == 6

        await wait_until(all_done, timeout=10)

    assert most == 2
    assert await broker.count(config_dir.name("billing")) == 0


async def test_a_failing_handler_is_retried_in_process_then_on_the_broker_then_dead_lettered(
        config_dir: ConfigDir, start_router: Any, make_service: Any, broker: Broker,
        connection: aio_pika.abc.AbstractConnection) -> None:
    """2 calls per round, 2 broker rounds, then handler_failed with the router's headers."""
    await start_router(config_dir)
    service = make_service()
    attempts: list[int] = []

    @service.handler("OrderCreated")
    async def on_created(order: Any, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        raise ValueError(f"boom {ctx.attempt}")

    async with service.running(connection):
        publisher = await ServicePublisher.open(connection, config_dir.ingress)
        message_id = await publisher.publish("OrderCreated", order_created(), version=2)
        [dead] = await _dead_letters(broker, config_dir, 1)

    h = dead.headers
    assert attempts == [1, 2, 3, 4, 5, 6]
    assert dead.message_id == message_id
    assert dead.routing_key == "handler_failed.OrderCreated"
    assert (h["x-mcp-reason"], h["x-mcp-error"], h["x-mcp-attempts"]) == \
        ("handler_failed", "ValueError: boom 6", 6)
    assert (h["x-mcp-original-exchange"], h["x-mcp-original-routing-key"]) == \
        (config_dir.name("orders"), "order.created")
    assert (h["x-mcp-destination-exchange"], h["x-mcp-destination-routing-key"]) == \
        ("", config_dir.name("billing"))
    assert (h["x-mcp-service"], h["x-mcp-route"], h["x-mcp-publisher"]) == \
        ("billing", "order-created", "guest")
    assert "x-mcp-retries" not in h
    assert "x-death" not in h
    assert dead.user_id is None


async def test_a_handler_that_recovers_in_a_broker_round_handles_the_message_once(
        config_dir: ConfigDir, start_router: Any, make_service: Any, broker: Broker,
        connection: aio_pika.abc.AbstractConnection) -> None:
    """Failing the first round only: handled on the third call, nothing dead-lettered."""
    await start_router(config_dir)
    service = make_service()
    attempts: list[int] = []

    @service.handler("OrderCreated")
    async def on_created(order: Any, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt <= 2:
            raise ConnectionError("database away")

    async with service.running(connection):
        publisher = await ServicePublisher.open(connection, config_dir.ingress)
        await publisher.publish("OrderCreated", order_created(), version=2)

        async def handled() -> bool:
            return len(attempts) == 3

        await wait_until(handled, timeout=10)

    assert attempts == [1, 2, 3]
    assert await broker.count(config_dir.dead_queue) == 0


async def test_a_permanent_error_is_dead_lettered_without_retries(
        config_dir: ConfigDir, start_router: Any, make_service: Any, broker: Broker,
        connection: aio_pika.abc.AbstractConnection) -> None:
    """PermanentError: one call, then handler_failed at once."""
    await start_router(config_dir)
    service = make_service()
    calls: list[int] = []

    @service.handler("OrderCreated")
    async def on_created(order: Any, ctx: Context) -> None:
        calls.append(ctx.attempt)
        raise PermanentError("customer c-1 is closed")

    async with service.running(connection):
        publisher = await ServicePublisher.open(connection, config_dir.ingress)
        await publisher.publish("OrderCreated", order_created(), version=2)
        [dead] = await _dead_letters(broker, config_dir, 1)

    assert calls == [1]
    assert (dead.headers["x-mcp-reason"], dead.headers["x-mcp-error"],
            dead.headers["x-mcp-attempts"]) == \
        ("handler_failed", "PermanentError: customer c-1 is closed", 1)


async def test_a_duplicate_delivery_is_acked_without_calling_the_handler(
        idempotency: Idempotency, config_dir: ConfigDir,
        start_router: Any, make_service: Any, broker: Broker,
        connection: aio_pika.abc.AbstractConnection) -> None:
    """The same message_id published twice is handled once; both deliveries are acked."""
    await start_router(config_dir)
    service = make_service(idempotency=idempotency, concurrency=1)
    handled: list[str | None] = []

    @service.handler("OrderCreated")
    async def on_created(order: Any, ctx: Context) -> None:
        handled.append(ctx.message_id)

    message_id = str(uuid.uuid4())
    async with service.running(connection):
        publisher = await ServicePublisher.open(connection, config_dir.ingress)
        order = order_created()
        await publisher.publish("OrderCreated", order, version=2, message_id=message_id)
        await publisher.publish("OrderCreated", order, version=2, message_id=message_id)
        other = await publisher.publish("OrderCreated", order, version=2)

        async def both_settled() -> bool:
            return other in handled and await broker.count(config_dir.name("billing")) == 0

        await wait_until(both_settled, timeout=10)

    assert handled == [message_id, other]
    assert await broker.count(config_dir.dead_queue) == 0


async def test_input_the_service_cannot_take_is_dead_lettered_unhandled_or_invalid(
        config_dir: ConfigDir, make_service: Any, broker: Broker,
        connection: aio_pika.abc.AbstractConnection) -> None:
    """A schema violation is schema_invalid, a type without handler is unhandled; no call."""
    await apply(config_dir)
    service = make_service()
    calls: list[str] = []

    @service.handler("OrderCreated", versions=[2])
    async def on_created(order: Any, ctx: Context) -> None:
        calls.append("called")

    orders = config_dir.name("orders")
    async with service.running(connection):
        await broker.publish(orders, order_created(total="lots"), routing_key="order.created",
                             type="OrderCreated", message_id="bad-body",
                             headers={"x-schema-version": 2})
        await broker.publish(orders, {"order_id": "x", "status": "paid"},
                             routing_key="order.created", type="OrderUpdated",
                             message_id="no-handler")
        dead = await _dead_letters(broker, config_dir, 2)

    by_id = {d.message_id: d for d in dead}
    assert calls == []
    assert by_id["bad-body"].headers["x-mcp-reason"] == "schema_invalid"
    assert "/total_amount" in str(by_id["bad-body"].headers["x-mcp-error"])
    assert (by_id["no-handler"].headers["x-mcp-reason"],
            by_id["no-handler"].headers["x-mcp-error"]) == \
        ("unhandled", "billing has no handler for OrderUpdated")


async def test_dlq_replay_to_the_default_exchange_puts_a_failed_message_back_in_its_queue(
        config_dir: ConfigDir, start_router: Any, make_service: Any, broker: Broker,
        connection: aio_pika.abc.AbstractConnection) -> None:
    """`dlq replay --to ''` redelivers a handler_failed letter to the service's queue only."""
    await start_router(config_dir)
    service = make_service(idempotency=InMemoryIdempotency())
    broken = True
    handled: list[str | None] = []

    @service.handler("OrderCreated")
    async def on_created(order: Any, ctx: Context) -> None:
        if broken:
            raise PermanentError("bug in billing")
        handled.append(ctx.message_id)

    async with service.running(connection):
        publisher = await ServicePublisher.open(connection, config_dir.ingress)
        message_id = await publisher.publish("OrderCreated", order_created(), version=2)

        async def dead_lettered() -> bool:
            return await broker.count(config_dir.dead_queue) == 1

        await wait_until(dead_lettered, timeout=10)
        broken = False
        replay = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "router", "dlq", "replay", "--config", str(config_dir.path),
             "--id", message_id, "--to", "", "--yes"],
            capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
            env={**os.environ, "MCP_AMQP_URL": AMQP_URL})

        async def handled_once() -> bool:
            return handled == [message_id]

        await wait_until(handled_once, timeout=10)

    assert replay.returncode == 0, replay.stderr
    assert await broker.count(config_dir.dead_queue) == 0
    assert await broker.count(config_dir.name("review")) == 0  # not routed again


async def test_stopping_lets_the_handler_in_flight_finish_and_acks_it(
        config_dir: ConfigDir, make_service: Any, broker: Broker,
        connection: aio_pika.abc.AbstractConnection) -> None:
    """Leaving running() stops intake, waits for the handler, acks; nothing redelivered."""
    await apply(config_dir)
    service = make_service()
    started, finished = asyncio.Event(), []

    @service.handler("OrderCreated")
    async def on_created(order: Any, ctx: Context) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(ctx.message_id)

    async with service.running(connection):
        await broker.publish(config_dir.name("orders"), order_created(),
                             routing_key="order.created", type="OrderCreated", message_id="m1")
        await asyncio.wait_for(started.wait(), 10)

    assert finished == ["m1"]
    assert await broker.count(config_dir.name("billing")) == 0


async def _watch_control(connection: aio_pika.abc.AbstractConnection, control: str
                         ) -> tuple[aio_pika.abc.AbstractChannel, list[tuple[str, dict[str, Any]]]]:
    """Everything published on ``control`` with a ``service.#`` key, in order."""
    channel = await connection.channel()
    exchange = await channel.declare_exchange(control, aio_pika.ExchangeType.TOPIC, durable=True)
    watch = await channel.declare_queue("", exclusive=True, auto_delete=True)
    await watch.bind(exchange, "service.#")
    seen: list[tuple[str, dict[str, Any]]] = []

    async def on_control(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        seen.append((message.routing_key or "", json.loads(message.body)))

    await watch.consume(on_control, no_ack=True)
    return channel, seen


def _count(seen: list[tuple[str, dict[str, Any]]], key: str) -> Callable[[], Any]:
    async def check() -> int:
        return sum(k == key for k, _ in seen)
    return check


async def test_an_instance_announces_itself_answers_pings_and_says_goodbye(
        config_dir: ConfigDir, make_service: Any,
        connection: aio_pika.abc.AbstractConnection) -> None:
    """An announcement at start, another at once on a ping, a goodbye at stop."""
    await apply(config_dir)
    channel, seen = await _watch_control(connection, config_dir.name("control"))
    service = make_service(heartbeat=60.0)  # no heartbeat during the test: pings only

    @service.handler("OrderCreated", versions=[2, 1])
    async def on_created(order: Any, ctx: Context) -> None:
        return None

    @service.handler("OrderUpdated")
    async def on_updated(order: Any, ctx: Context) -> None:
        return None

    announcements = _count(seen, "service.announce.billing")
    async with service.running(connection):
        await wait_until(lambda: _at_least(announcements, 1), timeout=5)
        control = await channel.get_exchange(config_dir.name("control"))
        await control.publish(aio_pika.Message(b"{}"), routing_key="service.ping")
        await wait_until(lambda: _at_least(announcements, 2), timeout=5)

    await wait_until(lambda: _at_least(_count(seen, "service.goodbye.billing"), 1), timeout=5)
    await channel.close()
    body = seen[0][1]
    assert [k for k, _ in seen if k != "service.ping"] == [
        "service.announce.billing", "service.announce.billing", "service.goodbye.billing"]
    assert body == {
        "name": "billing", "instance": service.instance,
        "queue": config_dir.name("billing"), "queues": [config_dir.name("billing")],
        "handles": [{"type": "OrderCreated", "versions": [1, 2]},
                    {"type": "OrderUpdated", "versions": []}],
        "heartbeat": 60.0, "sdk": body["sdk"], "started": body["started"],
    }
    assert body["sdk"].startswith("mcp-router")
    assert seen[-1][1] == {"name": "billing", "instance": service.instance}
    assert service.instance.startswith("billing-")


async def test_an_instance_announces_itself_again_at_every_heartbeat(
        config_dir: ConfigDir, make_service: Any,
        connection: aio_pika.abc.AbstractConnection) -> None:
    """With a 0.1 s heartbeat, announcements keep coming while the service runs."""
    await apply(config_dir)
    channel, seen = await _watch_control(connection, config_dir.name("control"))
    service = make_service(heartbeat=0.1)

    async with service.running(connection):
        await wait_until(lambda: _at_least(_count(seen, "service.announce.billing"), 4),
                         timeout=5)

    await channel.close()
    assert {b["instance"] for _, b in seen} == {service.instance}


async def _at_least(counter: Callable[[], Any], n: int) -> bool:
    return bool(await counter() >= n)


async def test_redis_claims_are_shared_expire_and_release_only_their_own(
        redis_store: RedisIdempotency) -> None:
    """SET NX claims: a second claimer is busy; done is seen as done; a dead claim expires."""
    other = RedisIdempotency(redis_store.client, prefix=redis_store.prefix, claim_ttl=0.05)

    first = await redis_store.claim("billing:m1")
    assert isinstance(first, Claimed)
    assert await other.claim("billing:m1") is Seen.BUSY
    await other.release(Claimed(first.key, "not-the-token"))
    assert await other.claim("billing:m1") is Seen.BUSY
    await redis_store.done(first)
    assert await other.claim("billing:m1") is Seen.DONE

    crashed = await other.claim("billing:m2")
    assert isinstance(crashed, Claimed)
    await asyncio.sleep(0.1)  # the claim's TTL, set on the Redis server
    assert isinstance(await redis_store.claim("billing:m2"), Claimed)
    with contextlib.suppress(Exception):
        assert await redis_store.client.pttl(first.key) > 0


async def test_the_example_services_invoice_an_order_placed_at_checkout(
        config_dir: ConfigDir, start_router: Any, broker: Broker,
        connection: aio_pika.abc.AbstractConnection) -> None:
    """examples.checkout places an order; examples.billing invoices it, once."""
    from examples import billing, checkout  # noqa: PLC0415 -- examples are not a dependency

    await start_router(config_dir)
    ledger = billing.Ledger()
    service = billing.build(config_dir.load(), idempotency=InMemoryIdempotency(), ledger=ledger,
                            queue=config_dir.name("billing"), retry=FAST,
                            control_exchange=config_dir.name("control"), sleep=_no_wait)
    config_dir.extra_queues.extend(service.retry_queues(service.queue))

    async with service.running(connection):
        publisher = await ServicePublisher.open(connection, config_dir.ingress,
                                                registry=config_dir.load().registry)
        created, _paid = await checkout.place_order(publisher, total=30.0)

        async def invoiced() -> bool:
            return bool(ledger.invoices)

        await wait_until(invoiced, timeout=10)

    [invoice] = ledger.invoices.values()
    assert (invoice["amount"], invoice["currency"], invoice["message_id"]) == \
        (30.0, "EUR", created)
    await broker.delete([config_dir.name("control")], [])


async def test_a_service_whose_queue_does_not_exist_does_not_start(
        config_dir: ConfigDir, make_service: Any,
        connection: aio_pika.abc.AbstractConnection) -> None:
    """A missing queue stops the start with an error naming it and how to fix it."""
    service = make_service(queue=config_dir.name("nobody-declared-this"))

    with pytest.raises(MissingQueue, match=r"nobody-declared-this' does not exist .*apply"):
        async with service.running(connection):
            pass
