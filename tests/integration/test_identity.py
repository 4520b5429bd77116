"""Publisher identity: user_id from another broker user travels as x-mcp-publisher."""

from __future__ import annotations

import json

import aio_pika

from tests.integration.conftest import AMQP_URL, Broker, ConfigDir, order_created


async def test_publisher_identity_from_another_user_is_carried_not_copied(
        broker: Broker, config_dir: ConfigDir, start_router, other_user) -> None:
    """A copy of a message from user X has no user_id (the broker would refuse it) but
    carries X in x-mcp-publisher; so does its dead letter."""
    name, password = other_user
    url = AMQP_URL.replace("guest:guest@", f"{name}:{password}@")
    await start_router(config_dir)
    connection = await aio_pika.connect(url)
    try:
        await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                             user_id=name, message_id="from-x", connection=connection)
        await broker.publish(config_dir.ingress, b"garbage", type="OrderCreated",
                             user_id=name, message_id="bad-from-x", connection=connection)
    finally:
        await connection.close()

    [copy] = await broker.take(config_dir.name("billing"), 1)
    [dead] = await broker.take(config_dir.dead_queue, 1)

    assert copy.user_id is None
    assert copy.headers["x-mcp-publisher"] == name
    assert dead.user_id is None
    assert dead.headers["x-mcp-publisher"] == name
    assert json.loads(copy.body)["customer_id"] == "c-1"
