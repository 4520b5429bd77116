"""Routing on the real broker: by type, by content, fan-out, headers on copies."""

from __future__ import annotations

import json
from collections import Counter

from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from router.observe.tracing import trace_id_of
from tests.integration.conftest import Broker, ConfigDir, order_created

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_message_goes_to_every_matching_route(broker: Broker, config_dir: ConfigDir,
                                                    start_router) -> None:
    """A big order matches the type route and the CEL route: both get a copy."""
    await start_router(config_dir)
    await broker.publish(config_dir.ingress, order_created(2500.0), type="OrderCreated",
                         message_id="m-big")
    await broker.publish(config_dir.ingress, order_created(5.0), type="OrderCreated",
                         message_id="m-small")

    billing = await broker.take(config_dir.name("billing"), 2)
    review = await broker.take(config_dir.name("review"), 1)

    assert sorted(m.message_id for m in billing) == ["m-big", "m-small"]
    assert review[0].message_id == "m-big"
    assert review[0].headers["x-mcp-route"] == "big-orders"
    assert await broker.count(config_dir.dead_queue) == 0


async def test_type_falls_back_to_routing_key(broker: Broker, config_dir: ConfigDir,
                                              start_router) -> None:
    """Without a ``type`` property the routing key names the message type."""
    await start_router(config_dir)
    await broker.publish(config_dir.ingress, order_created(), routing_key="OrderCreated")

    [copy] = await broker.take(config_dir.name("billing"), 1)

    assert copy.routing_key == "order.created"


async def test_copy_keeps_body_and_properties_and_gets_router_headers(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """Copies keep body and properties, lose user_id, and carry route, publisher and trace."""
    await start_router(config_dir)
    body = order_created()
    await broker.publish(config_dir.ingress, body, type="OrderCreated", message_id="m-1",
                         correlation_id="corr-9", app_id="shop", user_id="guest",
                         headers={"traceparent": TRACEPARENT, "x-tenant": "acme",
                                  "x-mcp-route": "forged", "x-mcp-publisher": "root"})

    [copy] = await broker.take(config_dir.name("billing"), 1)

    assert json.loads(copy.body) == body
    assert (copy.message_id, copy.correlation_id, copy.app_id) == ("m-1", "corr-9", "shop")
    assert copy.type == "OrderCreated"
    assert copy.user_id is None
    assert copy.headers["x-mcp-publisher"] == "guest"
    assert copy.headers["x-mcp-route"] == "order-created"
    assert copy.headers["x-tenant"] == "acme"
    assert trace_id_of(copy.headers) == "0af7651916cd43dd8448eb211c80319c"
    assert copy.headers["traceparent"] != TRACEPARENT  # parent is the router's span


async def test_message_id_is_assigned_when_absent(broker: Broker, config_dir: ConfigDir,
                                                  start_router) -> None:
    """A message published without message_id is routed with a fresh UUID."""
    await start_router(config_dir)
    await broker.publish_with_pika(config_dir.ingress, json.dumps(order_created(2000.0)).encode(),
                                   type="OrderCreated")

    [billing] = await broker.take(config_dir.name("billing"), 1)
    [review] = await broker.take(config_dir.name("review"), 1)

    assert billing.message_id is not None
    assert len(billing.message_id) == 36
    assert billing.message_id == review.message_id


async def test_trace_context_is_read_whatever_the_header_type(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """traceparent sent as bytes continues the trace; as an int it starts a new one."""
    await start_router(config_dir)
    await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                         message_id="bytes",
                         headers={"traceparent": bytearray(TRACEPARENT.encode())})
    await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                         message_id="int", headers={"traceparent": 12345})

    copies = {m.message_id: m for m in await broker.take(config_dir.name("billing"), 2)}

    assert trace_id_of(copies["bytes"].headers) == "0af7651916cd43dd8448eb211c80319c"
    fresh = trace_id_of(copies["int"].headers)
    assert fresh is not None
    assert fresh != "0af7651916cd43dd8448eb211c80319c"
    carrier = {"traceparent": copies["int"].headers["traceparent"]}
    assert TraceContextTextMapPropagator().extract(carrier)


async def test_many_messages_in_flight_all_arrive(broker: Broker, config_dir: ConfigDir,
                                                  start_router) -> None:
    """Two thousand messages published at once all reach their queue.

    At-least-once: a confirm slower than the publish timeout may legitimately
    duplicate a copy on a loaded machine, so duplicates are reported, not failed.
    """
    await start_router(config_dir, prefetch=128)
    ids = [f"bulk-{i}" for i in range(2000)]
    messages = [(json.dumps(order_created()).encode(), {"type": "OrderCreated", "message_id": i})
                for i in ids]

    await broker.publish_many(config_dir.ingress, messages)
    got = await broker.drain_ids(config_dir.name("billing"), ids)

    seen = Counter(m.message_id for m in got)
    assert set(seen) == set(ids)
    assert sum(seen.values()) - len(ids) <= len(ids) // 100, seen.most_common(3)
    assert await broker.count(config_dir.ingress_queue) == 0
