"""Sensitive fields in the router's own queues, on the real broker: a copy parked for a retry
and a message held back by rate shaping sit there sealed, and come out plain only where a
policy entitles it; a poison message ends in the dead letters sealed and replays without a
key."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import aio_pika
import pytest

from router.core import pipeline
from router.core.fieldcrypt import is_sealed
from tests.integration.conftest import AMQP_URL, ROOT, Broker, ConfigDir, wait_until
from tests.integration.test_encryption import (  # the vault fixture and its payments
    KEK,
    _leaks,
    payment,
    vault,  # noqa: F401 - a fixture, used by name
)

PARK = "1500ms"  # long enough to read the parked message before it comes back


async def _peek(broker: Broker, queue: str, count: int,
                timeout: float = 10) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """The ``count`` messages waiting in ``queue``, read with basic.get and given back
    (the router, or ``dlq``, takes them afterwards)."""
    async def there() -> bool:
        return await broker.count(queue) >= count
    await wait_until(there, timeout=timeout, interval=0.02)
    channel = await broker.connection.channel()
    try:
        got = [await (await channel.get_queue(queue, ensure=False)).get(timeout=5)
               for _ in range(count)]
        for message in got:
            await message.reject(requeue=True)
        return got
    finally:
        await channel.close()


async def _parked(broker: Broker, queue: str, count: int) -> list[dict[str, Any]]:
    """The bodies parked in ``queue``: none holds a plain sensitive value."""
    got = await _peek(broker, queue, count)
    assert not [m for m in got if _leaks(m.body.decode())], [m.body for m in got]
    return [json.loads(m.body) for m in got]


def _sealed(body: dict[str, Any]) -> bool:
    return is_sealed(body["customer"]["email"]) and is_sealed(body["customer"]["card"]) \
        and body["customer"]["name"] == "Ada"


async def test_a_parked_retry_is_sealed_and_comes_out_plain_only_where_entitled(
        broker: Broker, vault: ConfigDir, start_router: Any) -> None:  # noqa: F811 - the fixture
    """Two unroutable copies (one of an entitled route) wait sealed in the retry queue; once
    bound, the entitled one arrives plain, the other sealed."""
    p = vault.prefix
    (vault.path / "policies" / "retry.yaml").write_text(
        f"retry:\n  - match: '*'\n    attempts: 1\n    delays: [{', '.join([PARK] * 20)}]\n")
    (vault.path / "policies" / "encryption.yaml").write_text(
        "encryption:\n  key: pii\n  plain:\n    - route: books\n    - route: late-books\n")
    topology = vault.topology
    topology["routes"].append({"name": "late-books", "message_type": "Payment",
                               "when": "message.payment_id == 'lost'",
                               "to": [{"exchange": f"{p}.void", "routing_key": "books"}]})
    vault.write(topology)
    await start_router(vault, kek=KEK)
    await broker.publish(vault.ingress, payment("lost"), type="Payment", message_id="late")

    parked = await _parked(broker, f"{vault.ingress_queue}.retry.{PARK}", 2)
    late = await _bind(broker, vault, ("x", "books"))
    copies = {m.headers["x-mcp-route"]: json.loads(m.body)
              for m in await broker.take(late, 2, timeout=15)}

    assert all(_sealed(body) for body in parked)
    assert copies["late-books"] == payment("lost")
    assert _sealed(copies["lost"])
    assert await broker.count(vault.dead_queue) == 0


async def _bind(broker: Broker, directory: ConfigDir, keys: tuple[str, ...]) -> str:
    """A queue for what went to the 'void' exchange, bound with ``keys``."""
    directory.extra_queues.append(directory.name("late"))
    channel = await broker.connection.channel()
    queue = await channel.declare_queue(directory.name("late"), durable=True,
                                        arguments={"x-queue-type": "quorum"})
    for key in keys:
        await queue.bind(directory.name("void"), key)
    await channel.close()
    return queue.name


async def test_a_shaped_message_is_parked_sealed_and_routed_as_usual(
        broker: Broker, vault: ConfigDir, start_router: Any) -> None:  # noqa: F811 - the fixture
    """Over the rate, the whole message waits sealed; when it comes back books gets it
    plain and audit sealed, like the one that went at once."""
    (vault.path / "policies" / "rates.yaml").write_text(
        "rate_limits:\n  - match: 'Payment'\n    rate: 1/s\n    burst: 1\n"
        f"    shape_delay: {PARK}\n")
    await start_router(vault, kek=KEK)
    for pid in ("now", "later"):
        await broker.publish(vault.ingress, payment(pid), type="Payment", message_id=pid)

    [parked] = await _parked(broker, f"{vault.ingress_queue}.retry.{PARK}", 1)
    books = {m.message_id: json.loads(m.body)
             for m in await broker.take(vault.name("books"), 2, timeout=15)}
    audit = await broker.take(vault.name("pay-audit"), 2, timeout=15)

    assert _sealed(parked)
    assert parked["payment_id"] == "later"
    assert books == {"now": payment("now"), "later": payment("later")}
    assert all(_sealed(json.loads(m.body)) for m in audit)
    assert await broker.count(vault.dead_queue) == 0


async def test_a_poison_message_is_dead_lettered_sealed_and_replays_without_a_key(
        broker: Broker, vault: ConfigDir, start_router: Any,  # noqa: F811 - the fixture
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A message that crashes the router every time: at the delivery limit the router
    dead-letters it itself (delivery_limit, sealed); ``dlq replay`` (no KEK) routes it
    again with its fields still sealed."""
    real_decide = pipeline.decide

    def crashing_decide(envelope: Any, config: Any, *rest: Any, **named: Any) -> Any:
        if envelope.properties.message_id == "poison":
            raise RuntimeError("a bug triggered by this message")
        return real_decide(envelope, config, *rest, **named)

    monkeypatch.setattr("router.core.sealing.decide", crashing_decide)  # what prepare calls
    await start_router(vault, kek=KEK)
    await broker.publish(vault.ingress, payment(), type="Payment", message_id="poison")
    [dead] = await _peek(broker, vault.dead_queue, 1, timeout=30)

    assert dead.headers["x-mcp-reason"] == "delivery_limit"
    assert dead.headers["x-mcp-attempts"] == 4  # delivery_limit is 3: the 4th is the last
    assert "x-death" not in dead.headers
    assert not _leaks(dead.body.decode())
    assert not _leaks({k: str(v) for k, v in dead.headers.items()})
    assert _sealed(json.loads(dead.body))

    monkeypatch.undo()  # the bug is fixed
    replay = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "router", "dlq", "replay", "--config", str(vault.path),
        "--amqp-url", AMQP_URL, "--yes"], capture_output=True, text=True, cwd=ROOT,
        timeout=60, check=False, env={"PATH": "/usr/bin:/bin"})
    assert replay.returncode == 0, replay.stderr
    [books] = await broker.take(vault.name("books"), 1, timeout=15)
    assert books.message_id == "poison"
    assert _sealed(json.loads(books.body))  # replayed: the router never decrypts it
