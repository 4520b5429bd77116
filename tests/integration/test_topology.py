"""Declaring the topology: idempotent, every entity, conflicts reported clearly."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from router.errors import TopologyConflict
from tests.integration.conftest import AMQP_URL, ROOT, Broker, ConfigDir, apply


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", *args],  # noqa: S603
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


async def test_apply_declares_everything_and_is_idempotent(broker: Broker,
                                                           config_dir: ConfigDir) -> None:
    """Applying twice declares the same entities and changes nothing the second time."""
    first = await apply(config_dir)
    second = await apply(config_dir)

    assert first == second
    assert f"queue {config_dir.ingress_queue} (quorum)" in first
    assert f"queue {config_dir.name('review')} (classic)" in first
    assert f"queue {config_dir.name('audit')} (stream)" in first
    assert await broker.count(config_dir.dead_queue) == 0


async def test_ingress_queue_dead_letters_after_the_delivery_limit(
        broker: Broker, config_dir: ConfigDir) -> None:
    """The ingress quorum queue sends a message rejected too often to the dead-letter queue."""
    await apply(config_dir)
    await broker.publish(config_dir.ingress, b"{}", type="OrderCreated", message_id="poison")
    channel = await broker.connection.channel()
    queue = await channel.get_queue(config_dir.ingress_queue, ensure=False)

    for _ in range(4):  # delivery_limit is 3 in the test topology
        message = await queue.get(timeout=5, fail=False)
        if message is None:
            break
        await message.nack(requeue=True)
    [dead] = await broker.take(config_dir.dead_queue, 1)

    assert dead.message_id == "poison"
    assert dead.headers["x-death"][0]["reason"] == "delivery_limit"


async def test_conflicting_entities_are_all_reported_by_name(broker: Broker,
                                                             config_dir: ConfigDir) -> None:
    """Entities existing with other settings are named, every one, and no channel crash leaks."""
    channel = await broker.connection.channel()
    await channel.declare_queue(config_dir.name("billing"), durable=True)  # classic, not quorum
    await channel.declare_exchange(config_dir.name("orders"), "fanout")  # not topic

    with pytest.raises(TopologyConflict) as caught:
        await apply(config_dir)

    text = str(caught.value)
    assert f"queue {config_dir.name('billing')!r}" in text
    assert "x-queue-type" in text
    assert f"exchange {config_dir.name('orders')!r}" in text
    assert len(caught.value.conflicts) == 2


async def test_cli_reports_conflicts_without_a_traceback(broker: Broker,
                                                         config_dir: ConfigDir) -> None:
    """``mcp-router apply`` prints each conflict and exits 1."""
    channel = await broker.connection.channel()
    await channel.declare_queue(config_dir.name("billing"), durable=True)

    result = await asyncio.to_thread(_cli, "apply", "--config", str(config_dir.path),
                                     "--amqp-url", AMQP_URL)

    assert result.returncode == 1
    assert f"conflict: queue {config_dir.name('billing')!r}" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_reports_an_unreachable_broker_clearly(config_dir: ConfigDir) -> None:
    """``apply`` against a closed port says it cannot connect, without a traceback."""
    result = _cli("apply", "--config", str(config_dir.path),
                  "--amqp-url", "amqp://guest:secret@127.0.0.1:1/")

    assert result.returncode == 1
    assert "cannot connect to amqp://guest:***@127.0.0.1:1/" in result.stderr
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr


async def test_cli_publish_sends_one_message_through_the_router(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """``mcp-router publish`` puts a typed, versioned message on the ingress; it is routed."""
    await start_router(config_dir)
    body = '{"order_id": "6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11", "customer_id": "c", ' \
           '"total_amount": 5}'

    result = await asyncio.to_thread(
        _cli, "publish", "--config", str(config_dir.path), "--amqp-url", AMQP_URL,
        "--type", "OrderCreated", "--version", "1", "--message-id", "cli-1", body)
    [copy] = await broker.take(config_dir.name("billing"), 1)

    assert result.returncode == 0, result.stderr
    assert "published cli-1 type=OrderCreated trace_id=" in result.stdout
    assert copy.message_id == "cli-1"
    assert copy.headers["x-schema-version"] == 1
    assert copy.headers["traceparent"].split("-")[1] in result.stdout


def test_cli_publish_refuses_a_body_that_is_not_json(config_dir: ConfigDir) -> None:
    """``publish`` checks its JSON argument before connecting."""
    result = _cli("publish", "--config", str(config_dir.path), "--type", "OrderCreated", "{")

    assert result.returncode == 1
    assert "the body is not JSON" in result.stderr


def test_cli_takes_every_node_of_a_cluster(config_dir: ConfigDir) -> None:
    """``--amqp-url`` given twice (or MCP_AMQP_URL with commas): a node that does not answer
    is skipped for the next one."""
    dead = "amqp://guest:guest@127.0.0.1:1/"
    repeated = _cli("apply", "--config", str(config_dir.path), "--amqp-url", dead,
                    "--amqp-url", AMQP_URL)
    listed = subprocess.run([sys.executable, "-m", "router", "apply", "--config",  # noqa: S603
                             str(config_dir.path)], capture_output=True, text=True, cwd=ROOT,
                            timeout=60, check=False,
                            env={**os.environ, "MCP_AMQP_URL": f"{dead},{AMQP_URL}"})

    assert repeated.returncode == 0, repeated.stderr
    assert f"declared queue {config_dir.name('billing')} (quorum)" in repeated.stdout
    assert listed.returncode == 0, listed.stderr


def test_cli_names_every_node_that_did_not_answer(config_dir: ConfigDir) -> None:
    """When no node answers, the error names each one, passwords hidden."""
    result = _cli("apply", "--config", str(config_dir.path),
                  "--amqp-url", "amqp://guest:secret@127.0.0.1:1/,amqp://guest:secret@127.0.0.1:2/")

    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr
    assert "127.0.0.1:2" in result.stderr
    assert "secret" not in result.stderr
