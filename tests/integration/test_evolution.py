"""Schema evolution through the router on the real broker, and check refusing a break."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

from tests.integration.conftest import ROOT, Broker, ConfigDir, order_created


def _versioned_topology(directory: ConfigDir) -> None:
    """billing asks for OrderCreated v2; review takes the message as published."""
    topology = dict(directory.topology)
    orders = directory.name("orders")
    topology["routes"] = [
        {"name": "billing-v2", "message_type": "OrderCreated", "version": 2,
         "to": [{"exchange": orders, "routing_key": "order.created"}]},
        {"name": "as-published", "message_type": "OrderCreated",
         "to": [{"exchange": orders, "routing_key": "order.review"}]},
    ]
    directory.write(topology)


async def test_old_message_arrives_upcast_where_a_route_asks_for_a_version(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """A v1 order reaches the v2 route upcast with x-schema-version 2, the other unchanged."""
    _versioned_topology(config_dir)
    await start_router(config_dir)
    v1 = {"order_id": str(uuid.uuid4()), "customer_id": "c-1", "total_amount": 12.5}
    raw = json.dumps(v1).encode()

    await broker.publish(config_dir.ingress, raw, type="OrderCreated", message_id="m-v1",
                         headers={"x-schema-version": 1})
    [billing] = await broker.take(config_dir.name("billing"), 1)
    [review] = await broker.take(config_dir.name("review"), 1)

    assert billing.headers["x-schema-version"] == 2
    assert json.loads(billing.body) == {
        **v1, "currency": "EUR", "created_at": "1970-01-01T00:00:00Z",
        "items": [{"sku": "UNITEMISED", "quantity": 1, "unit_price": 0}]}
    assert billing.message_id == "m-v1"
    assert review.headers["x-schema-version"] == 1
    assert review.body == raw
    assert await broker.count(config_dir.dead_queue) == 0


async def test_message_newer_than_a_route_asks_for_dead_letters_only_that_copy(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """The router does not downcast: a v2 message for a v1 route dead-letters that route's
    copy alone (its route in x-mcp-route); the other route still gets its copy."""
    _versioned_topology(config_dir)
    topology = dict(config_dir.topology)
    topology["routes"][0]["version"] = 1
    config_dir.write(topology)
    await start_router(config_dir)

    await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                         message_id="m-v2")
    [dead] = await broker.take(config_dir.dead_queue, 1)
    [review] = await broker.take(config_dir.name("review"), 1)

    assert dead.headers["x-mcp-reason"] == "schema_invalid"
    assert dead.headers["x-mcp-route"] == "billing-v2"
    assert dead.headers["x-mcp-destination-exchange"] == config_dir.name("orders")
    assert dead.headers["x-mcp-destination-routing-key"] == "order.created"
    assert "route 'billing-v2' asks for OrderCreated v1 but the message is v2" \
        in dead.headers["x-mcp-error"]
    assert review.headers["x-mcp-route"] == "as-published"
    assert await broker.count(config_dir.name("billing")) == 0


def test_check_refuses_a_new_version_that_breaks_the_compatibility_mode(
        config_dir: ConfigDir) -> None:
    """A v3 that requires a new field fails mcp-router check, naming file, line and field."""
    v2 = json.loads((ROOT / "schemas" / "OrderCreated" / "v2.json").read_text())
    v2["properties"]["channel"] = {"type": "string"}
    v2["required"].append("channel")
    (config_dir.path / "schemas" / "OrderCreated" / "v3.json").write_text(
        json.dumps(v2, indent=2))

    result = subprocess.run(  # noqa: S603 -- our own CLI
        [sys.executable, "-m", "router", "check", "--config", str(config_dir.path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)

    assert result.returncode == 1
    assert (f"{config_dir.path}/schemas/OrderCreated/v3.json:5: not backward compatible with "
            "v2: field /channel is required in v3 but v2 messages may lack it") \
        in result.stdout + result.stderr
