"""Policies on the real broker: who may publish what, input limits, priority."""

from __future__ import annotations

import asyncio
import json

import aio_pika

from tests.integration.conftest import (
    AMQP_URL,
    Broker,
    ConfigDir,
    apply,
    order_created,
    wait_until,
)

PAYMENT = {"payment_id": "p-1", "order_id": "6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11",
           "amount": 10, "currency": "EUR"}


def _route_payments_to_review(directory: ConfigDir) -> None:
    topology = directory.topology
    topology["routes"].append({"name": "payments-review", "message_type": "PaymentCaptured",
                               "to": [{"exchange": directory.name("orders"),
                                       "routing_key": "order.review"}]})
    directory.write(topology)


async def test_only_allowed_publishers_may_send_a_type(
        broker: Broker, config_dir: ConfigDir, start_router, other_user) -> None:
    """Payments only from the payments user: another user and an anonymous publisher are
    dead-lettered as unauthorized, naming the rule; the allowed one is routed."""
    name, password = other_user
    _route_payments_to_review(config_dir)
    (config_dir.path / "policies" / "access.yaml").write_text(
        "authorization:\n  default: allow\n  rules:\n"
        f"    - match: 'Payment*'\n      publishers: [{name}]\n")
    await start_router(config_dir)
    allowed = await aio_pika.connect(AMQP_URL.replace("guest:guest@", f"{name}:{password}@"))
    try:
        await broker.publish(config_dir.ingress, PAYMENT, type="PaymentCaptured",
                             user_id=name, message_id="from-payments", connection=allowed)
    finally:
        await allowed.close()
    await broker.publish(config_dir.ingress, PAYMENT, type="PaymentCaptured", user_id="guest",
                         message_id="from-guest")
    await broker.publish(config_dir.ingress, PAYMENT, type="PaymentCaptured",
                         message_id="anonymous")
    await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                         message_id="order")

    [routed] = await broker.take(config_dir.name("review"), 1)
    dead = {m.message_id: m for m in await broker.take(config_dir.dead_queue, 2)}
    [order] = await broker.take(config_dir.name("billing"), 1)

    assert (routed.message_id, order.message_id) == ("from-payments", "order")
    assert routed.headers["x-mcp-publisher"] == name
    assert dead["from-guest"].headers["x-mcp-reason"] == "unauthorized"
    assert dead["from-guest"].routing_key == "unauthorized.PaymentCaptured"
    assert dead["from-guest"].headers["x-mcp-error"] == (
        f"publisher 'guest' may not publish PaymentCaptured: rule 'Payment*' at "
        f"policies/access.yaml:4 allows {name}")
    assert "an unknown publisher (no user_id)" in dead["anonymous"].headers["x-mcp-error"]


async def test_input_limits_refuse_oversized_and_incomplete_messages(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """Over max_body_bytes or missing a required property: dead-lettered with the limit."""
    (config_dir.path / "policies" / "limits.yaml").write_text(
        "limits:\n  - match: '*'\n    max_body_bytes: 2000\n"
        "    required_properties: [app_id]\n")
    await start_router(config_dir)
    await broker.publish(config_dir.ingress, order_created(note="x" * 3000), app_id="shop",
                         type="OrderCreated", message_id="big")
    await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                         message_id="no-app")
    await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                         app_id="shop", message_id="fine")

    dead = {m.message_id: m for m in await broker.take(config_dir.dead_queue, 2)}
    [fine] = await broker.take(config_dir.name("billing"), 1)

    assert fine.message_id == "fine"
    assert dead["big"].headers["x-mcp-reason"] == "malformed"
    assert "over the limit of 2000" in dead["big"].headers["x-mcp-error"]
    assert dead["no-app"].headers["x-mcp-error"] == "required properties missing: app_id"


async def test_urgent_messages_overtake_a_backlog(broker: Broker, config_dir: ConfigDir,
                                                  start_router) -> None:
    """With priority 9 for payments, a payment routed after 300 big orders is consumed
    from the priority queue before them."""
    _route_payments_to_review(config_dir)
    (config_dir.path / "policies" / "priority.yaml").write_text(
        "priority:\n  - match: 'Payment*'\n    priority: 9\n")
    await apply(config_dir)
    body = order_created(5000.0)
    await broker.publish_many(config_dir.ingress, [
        (json.dumps(body).encode(), {"type": "OrderCreated", "message_id": f"bulk-{i}"})
        for i in range(300)])
    await broker.publish(config_dir.ingress, PAYMENT, type="PaymentCaptured",
                         message_id="urgent")
    router = await start_router(config_dir)
    review = config_dir.name("review")

    async def all_routed() -> bool:
        return await broker.count(review) >= 301

    await wait_until(all_routed, timeout=30)
    await router.close()  # nothing consumes meanwhile: the queue holds the whole backlog
    first = await broker.take(review, 5)

    assert first[0].message_id == "urgent"
    assert first[0].priority == 9
    assert all(m.message_id.startswith("bulk-") for m in first[1:])


async def test_rate_limit_rejects_what_is_over(broker: Broker, config_dir: ConfigDir,
                                               start_router) -> None:
    """on_excess: reject dead-letters the excess as rate_limited, naming the rule."""
    (config_dir.path / "policies" / "rates.yaml").write_text(
        "rate_limits:\n  - match: 'Order*'\n    rate: 1/h\n    burst: 2\n"
        "    on_excess: reject\n")
    await start_router(config_dir)
    for i in range(3):
        await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                             message_id=f"r-{i}")

    routed = await broker.take(config_dir.name("billing"), 2)
    [dead] = await broker.take(config_dir.dead_queue, 1)

    assert {m.message_id for m in routed} | {dead.message_id} == {"r-0", "r-1", "r-2"}
    assert dead.headers["x-mcp-reason"] == "rate_limited"
    assert "rule 'Order*' at policies/rates.yaml:2" in dead.headers["x-mcp-error"]


async def test_rate_limit_shapes_without_dropping(broker: Broker, config_dir: ConfigDir,
                                                  start_router) -> None:
    """on_excess: shape parks the excess on the broker; every message is routed in the end,
    at about the configured rate, none dead-lettered."""
    (config_dir.path / "policies" / "rates.yaml").write_text(
        "rate_limits:\n  - match: 'Order*'\n    rate: 10/s\n    burst: 1\n"
        "    shape_delay: 100ms\n")
    router = await start_router(config_dir)
    started = asyncio.get_running_loop().time()
    for i in range(10):
        await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                             message_id=f"s-{i}", user_id="guest")

    routed = await broker.take(config_dir.name("billing"), 10, timeout=30)
    elapsed = asyncio.get_running_loop().time() - started

    assert {m.message_id for m in routed} == {f"s-{i}" for i in range(10)}
    assert all(m.headers["x-mcp-publisher"] == "guest" for m in routed)
    assert not [h for m in routed for h in m.headers if h.startswith("x-mcp-retry")]
    assert elapsed >= 0.8  # 9 tokens at 10/s
    assert await broker.count(config_dir.dead_queue) == 0
    shaped = router.service.metrics.registry.get_sample_value(
        "mcp_router_messages_total", {"outcome": "shaped", "type": "OrderCreated"})
    assert (shaped or 0) >= 5
