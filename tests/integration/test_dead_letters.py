"""Every message the router cannot deliver is dead-lettered with a reason, never lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.integration.conftest import Broker, ConfigDir, order_created

GARBAGE = [
    pytest.param(b"not json at all", {}, "malformed", "not valid JSON", id="not-json"),
    pytest.param(b"\xff\xfe\xfd", {}, "malformed", "not valid JSON", id="invalid-utf8"),
    pytest.param(b'"\\ud800"', {}, "malformed", "not valid JSON", id="lone-surrogate"),
    pytest.param(b"[" * 5000 + b"]" * 5000, {}, "malformed", "not valid JSON", id="deep-nesting"),
    pytest.param(b"{}", {"headers": {"x-schema-version": "abc"}}, "malformed",
                 "x-schema-version", id="version-not-int"),
    pytest.param(b"{}", {"headers": {"x-schema-version": [1, 2]}}, "malformed",
                 "x-schema-version", id="version-list"),
    pytest.param(b"{}", {"content_type": "text/plain"}, "malformed", "not JSON",
                 id="content-type"),
    pytest.param(b'{"total_amount": -5, "currency": "EUR", "total_amount": 5}', {}, "malformed",
                 "has the key 'total_amount' twice in one object", id="duplicate-key"),
    pytest.param(b"{}", {"type": "NoSuchType"}, "unknown_type", "no schema", id="unknown-type"),
    pytest.param(b'{"order_id": "x"}', {}, "schema_invalid", "/order_id: format",
                 id="schema-invalid"),
    pytest.param(b"{}", {"headers": {"x-schema-version": 7}}, "schema_invalid",
                 "no schema version 7", id="no-such-version"),
]


@pytest.mark.parametrize(("body", "props", "reason", "error"), GARBAGE)
async def test_bad_input_is_dead_lettered_and_the_queue_keeps_flowing(
        broker: Broker, config_dir: ConfigDir, start_router, body: bytes,
        props: dict, reason: str, error: str) -> None:
    """Garbage goes to the DLQ with reason and detail; a valid message behind it still flows."""
    await start_router(config_dir)
    props = {"type": "OrderCreated", "message_id": "bad-1", **props}
    await broker.publish(config_dir.ingress, body, routing_key="rk.in", **props)
    await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                         message_id="good-1")

    [dead] = await broker.take(config_dir.dead_queue, 1)
    [good] = await broker.take(config_dir.name("billing"), 1)

    assert good.message_id == "good-1"
    assert dead.message_id == "bad-1"
    assert dead.body == body
    assert dead.headers["x-mcp-reason"] == reason
    assert error in dead.headers["x-mcp-error"]
    assert dead.routing_key == f"{reason}.{props['type']}"
    assert dead.headers["x-mcp-original-exchange"] == config_dir.ingress
    assert dead.headers["x-mcp-original-routing-key"] == "rk.in"
    assert dead.headers["x-mcp-attempts"] == 1
    stamp = datetime.fromisoformat(dead.headers["x-mcp-dead-lettered-at"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert "traceparent" in dead.headers


async def test_unroutable_copy_is_detected_and_dead_lettered(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """A copy to an exchange with no bound queue is returned, retried in process and on the
    broker, then dead-lettered with every attempt counted."""
    await start_router(config_dir)
    body = {"order_id": "6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11", "status": "paid"}
    await broker.publish(config_dir.ingress, body, type="OrderUpdated", message_id="upd-1",
                         user_id="guest")

    [dead] = await broker.take(config_dir.dead_queue, 1)

    assert dead.headers["x-mcp-reason"] == "unroutable"
    assert dead.routing_key == "unroutable.OrderUpdated"
    assert dead.headers["x-mcp-route"] == "updates-nowhere"
    assert dead.headers["x-mcp-attempts"] == 6  # 2 in process, then 2 more per broker round
    assert dead.headers["x-mcp-destination-exchange"] == config_dir.name("nowhere")
    assert "NO_ROUTE" in dead.headers["x-mcp-error"]
    assert dead.headers["x-mcp-publisher"] == "guest"
    assert dead.headers["x-mcp-original-exchange"] == config_dir.ingress
    assert "x-mcp-retry-route" not in dead.headers
    assert "x-death" not in dead.headers
    assert dead.user_id is None
    assert json.loads(dead.body) == body


async def test_fan_out_partial_unroutable_keeps_the_routed_copy(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """Copies sharing one message_id are judged separately: one routed, one dead-lettered."""
    topology = config_dir.topology
    topology["routes"].append({"name": "created-nowhere", "message_type": "OrderCreated",
                               "to": [{"exchange": config_dir.name("nowhere"),
                                       "routing_key": "lost"}]})
    config_dir.write(topology)
    await start_router(config_dir)
    for i in range(20):
        await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                             message_id=f"fan-{i}")

    routed = await broker.take(config_dir.name("billing"), 20)
    dead = await broker.take(config_dir.dead_queue, 20)

    assert {m.message_id for m in routed} == {f"fan-{i}" for i in range(20)}
    assert {m.headers["x-mcp-route"] for m in dead} == {"created-nowhere"}
    assert {m.headers["x-mcp-reason"] for m in dead} == {"unroutable"}


async def test_message_matching_no_route_is_unroutable(broker: Broker, config_dir: ConfigDir,
                                                       start_router) -> None:
    """A valid message of a known type that no route takes is dead-lettered, not dropped."""
    await start_router(config_dir)
    body = {"payment_id": "p1", "order_id": "6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11",
            "amount": 3, "currency": "EUR"}
    await broker.publish(config_dir.ingress, body, type="PaymentCaptured")

    [dead] = await broker.take(config_dir.dead_queue, 1)

    assert dead.headers["x-mcp-reason"] == "unroutable"
    assert "no route" in dead.headers["x-mcp-error"]


async def test_headers_of_other_clients_and_types_do_not_stop_routing(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """Binary, non-UTF-8 and numeric header values pass through the router unharmed."""
    await start_router(config_dir)
    headers = {"x-bin": b"\xff\xfe", "traceparent": 7, "tracestate": b"\x00",
               "x-nested": {"a": [1, b"\xc3"]}}
    await broker.publish_with_pika(config_dir.ingress, json.dumps(order_created()).encode(),
                                   type="OrderCreated", message_id="odd-headers",
                                   headers=headers)

    [copy] = await broker.take(config_dir.name("billing"), 1)

    assert copy.message_id == "odd-headers"
    assert bytes(copy.headers["x-bin"]) == b"\xff\xfe"
    assert copy.headers["traceparent"].startswith("00-")
