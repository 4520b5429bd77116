"""End to end: the example producer (checkout) and consumer (billing) with the router.

The router runs on the repository's own example configuration (prefixed per
test by the ``mcp_router`` fixture that users get from ``router.testing.plugin``);
the services are the ones in ``examples/``, built on ``router.sdk``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from examples import billing, checkout
from router.sdk import InMemoryIdempotency, ServicePublisher
from router.testing.plugin import RouterUnderTest
from tests.integration.conftest import AMQP_URL, ROOT, wait_until


async def _true(value: object) -> bool:
    return bool(value)


def _instances(router: RouterUnderTest) -> list[str]:
    return [s["instance"] for s in router.router.service.consumers.listing()["services"]]


@contextlib.contextmanager
def _billing_process(router: RouterUnderTest, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A second billing instance, as its own process (so it can be killed outright)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 -- the example service with test arguments
            [sys.executable, "-m", "examples.billing", "--config", str(router.config.directory),
             "--queue", router.name("billing.orders"), "--heartbeat", "0.3"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "MCP_AMQP_URL": AMQP_URL})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.mcp_router(config=str(ROOT))
async def test_producer_router_and_consumer(mcp_router: RouterUnderTest, tmp_path: Path) -> None:
    """Handlers per type, a v1 order upcast to v2 for billing, a duplicate handled once,
    discovery seeing instances appear, expire when killed and leave on goodbye."""
    config, ledger = mcp_router.config, billing.Ledger()
    service = billing.build(config, idempotency=InMemoryIdempotency(), ledger=ledger,
                            queue=mcp_router.name("billing.orders"), heartbeat=0.3,
                            concurrency=1)  # in order: the last message marks the end
    connection = await aio_pika.connect(AMQP_URL)
    try:
        publisher = await ServicePublisher.open(connection, mcp_router.ingress,
                                                app_id="checkout", registry=config.registry)
        async with service.running(connection):
            # Discovery: the instance appears and billing's route is consumed.
            await wait_until(lambda: _true(_instances(mcp_router)), timeout=10)
            assert "order-created" not in mcp_router.router.service.consumers.unconsumed

            # The handler model: OrderCreated v2 then OrderUpdated, each to its handler.
            created, paid = await checkout.place_order(publisher, total=25.0)
            await wait_until(lambda: _true(("OrderUpdated", paid) in ledger.handled))
            assert ("OrderCreated", created) in ledger.handled

            # Schema evolution: a v1 order reaches billing as v2, defaults filled in.
            old = {"order_id": str(uuid.uuid4()), "customer_id": "c-9", "total_amount": 12.5}
            await publisher.publish("OrderCreated", old, version=1)
            await wait_until(lambda: _true(old["order_id"] in ledger.invoices))
            invoice = ledger.invoices[old["order_id"]]
            assert (invoice["version"], invoice["currency"]) == (2, "EUR")

            # Idempotency: the same message id delivered twice is handled once.
            order = checkout.order(30.0)
            duplicate = f"dup-{uuid.uuid4()}"
            for _ in range(2):
                await publisher.publish("OrderCreated", order, version=2, message_id=duplicate)
            marker = await publisher.publish("OrderUpdated", {
                "order_id": order["order_id"], "status": "paid",
                "updated_at": "2026-11-25T10:00:00Z"}, version=1)
            await wait_until(lambda: _true(("OrderUpdated", marker) in ledger.handled))
            assert ledger.handled.count(("OrderCreated", duplicate)) == 1

            # A second instance appears, then expires after three missed heartbeats.
            with _billing_process(mcp_router, tmp_path / "billing-2.log") as proc:
                await wait_until(lambda: _true(len(_instances(mcp_router)) == 2), timeout=20)
                proc.send_signal(signal.SIGKILL)  # no goodbye
                await wait_until(lambda: _true(len(_instances(mcp_router)) == 1), timeout=10)
        # A clean stop says goodbye: the router forgets the instance at once.
        await wait_until(lambda: _true(not _instances(mcp_router)), timeout=5)
        assert "order-created" in mcp_router.router.service.consumers.unconsumed
        channel = await connection.channel()
        dead = await channel.declare_queue(config.topology.dead_letter.queue, passive=True)
        assert dead.declaration_result.message_count == 0  # nothing went wrong on the way
    finally:
        await connection.close()


def _check(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 -- our own CLI
        [sys.executable, "-m", "router", "check", "--config", str(directory)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)


def test_check_refuses_an_incompatible_schema_change(tmp_path: Path) -> None:
    """A v3 of OrderCreated that requires a field v2 messages lack breaks the declared
    backward compatibility: check names the file, the field and why."""
    directory = tmp_path / "config"
    shutil.copytree(ROOT / "schemas", directory / "schemas")
    shutil.copytree(ROOT / "policies", directory / "policies")
    shutil.copy(ROOT / "topology.yaml", directory / "topology.yaml")
    v2: dict[str, Any] = json.loads((directory / "schemas/OrderCreated/v2.json").read_text())
    v2["title"] = "OrderCreated v3"
    v2["properties"]["channel"] = {"type": "string"}
    v2["required"] = [*v2["required"], "channel"]
    (directory / "schemas/OrderCreated/v3.json").write_text(json.dumps(v2, indent=2))

    result = _check(directory)

    assert result.returncode == 1
    assert "schemas/OrderCreated/v3.json" in result.stderr
    assert "channel" in result.stderr
    assert "backward" in result.stderr
