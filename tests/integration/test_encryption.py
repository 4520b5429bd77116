"""Field-level encryption against the real broker: plain only where a policy entitles it,
sealed in every other copy, dead letter and exported span; rotation; replay; the SDK."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from router.config.keys import rotate
from router.core.fieldcrypt import is_sealed
from router.observe.telemetry import Telemetry, TelemetrySettings
from router.sdk import Context, Service, ServicePublisher, keyring_of
from tests.integration.conftest import AMQP_URL, ROOT, Broker, ConfigDir, apply, wait_until
from tests.integration.otlp import Receiver

KEK = bytes(range(32))
EMAIL = "ada.lovelace@example.com"
CARD = "4111111111111111"
PAYMENT_SCHEMA = {
    "type": "object", "required": ["payment_id", "customer", "amount"],
    "additionalProperties": False,
    "properties": {
        "payment_id": {"type": "string"},
        "amount": {"type": "number"},
        "customer": {"type": "object", "properties": {
            "email": {"type": "string", "format": "email", "x-mcp-sensitive": True},
            "card": {"type": "string", "pattern": "^[0-9]{16}$", "x-mcp-sensitive": True},
            "name": {"type": "string"}}},
    },
}


def payment(pid: str = "p-1", **customer: Any) -> dict[str, Any]:
    return {"payment_id": pid, "amount": 12.5,
            "customer": {"email": EMAIL, "card": CARD, "name": "Ada", **customer}}


@pytest.fixture
def vault(config_dir: ConfigDir) -> ConfigDir:
    """Payments with a sensitive e-mail and card: 'books' entitled to plain, 'audit' not,
    'lost' to an exchange nothing is bound to; data key pii.v1."""
    p = config_dir.prefix
    (config_dir.path / "schemas" / "Payment").mkdir()
    (config_dir.path / "schemas" / "Payment" / "v1.json").write_text(json.dumps(PAYMENT_SCHEMA))
    (config_dir.path / "policies" / "encryption.yaml").write_text(
        "encryption:\n  key: pii\n  plain:\n    - route: books\n")
    rotate(config_dir.path / "keys", "pii", KEK, datetime.now(UTC))
    topology = config_dir.topology
    topology["exchanges"] += [{"name": f"{p}.pay", "type": "topic"},
                              {"name": f"{p}.void", "type": "topic"}]
    topology["queues"] += [{"name": f"{p}.books", "type": "classic"},
                           {"name": f"{p}.pay-audit", "type": "classic"}]
    topology["bindings"] += [
        {"exchange": f"{p}.pay", "queue": f"{p}.books", "routing_key": "books"},
        {"exchange": f"{p}.pay", "queue": f"{p}.pay-audit", "routing_key": "audit"}]
    topology["routes"] += [
        {"name": "books", "message_type": "Payment",
         "to": [{"exchange": f"{p}.pay", "routing_key": "books"}]},
        {"name": "audit", "message_type": "Payment", "when": "message.amount > 1.0",
         "to": [{"exchange": f"{p}.pay", "routing_key": "audit"}]},
        {"name": "lost", "message_type": "Payment", "when": "message.payment_id == 'lost'",
         "to": [{"exchange": f"{p}.void", "routing_key": "x"}]}]
    config_dir.write(topology)
    return config_dir


def _leaks(value: Any) -> bool:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return EMAIL in text or CARD in text


async def test_only_the_entitled_queue_gets_plain_values(
        broker: Broker, vault: ConfigDir, start_router: Any, receiver: Receiver) -> None:
    """books gets the message as published; audit, the dead letters of a refused copy and of
    an invalid message, and every exported span carry the fields only sealed."""
    telemetry = Telemetry.start(TelemetrySettings(service_name="mcp-router", exporter="otlp",
                                                  endpoint=receiver.url))
    try:
        await _route_and_check(broker, vault, start_router, receiver, telemetry)
    finally:
        telemetry.shutdown()


async def _route_and_check(broker: Broker, vault: ConfigDir, start_router: Any,
                           receiver: Receiver, telemetry: Telemetry) -> None:
    await start_router(vault, tracer=telemetry.tracer, kek=KEK)
    await broker.publish(vault.ingress, payment(), type="Payment", message_id="p-1",
                         content_type="application/json")
    await broker.publish(vault.ingress, payment("lost"), type="Payment", message_id="p-2")
    await broker.publish(vault.ingress, payment("p-3", email="not-an-email " + EMAIL),
                         type="Payment", message_id="p-3")

    books = await broker.take(vault.name("books"), 2)
    audit = await broker.take(vault.name("pay-audit"), 2)
    dead = await broker.take(vault.dead_queue, 2, timeout=20)

    assert sorted(json.loads(m.body)["payment_id"] for m in books) == ["lost", "p-1"]
    assert all(json.loads(m.body)["customer"]["email"] == EMAIL for m in books)
    for message in audit + dead:
        body = json.loads(message.body)
        assert not _leaks(message.body.decode()), message.body
        assert not _leaks({k: str(v) for k, v in (message.headers or {}).items()})
        assert is_sealed(body["customer"]["card"])
        assert body["customer"]["name"] == "Ada"
    reasons = sorted(str(m.headers["x-mcp-reason"]) for m in dead)
    assert reasons == ["schema_invalid", "unroutable"]

    async def exported() -> bool:
        await asyncio.to_thread(telemetry.flush)
        return len(receiver.named("process ")) >= 3
    await wait_until(exported, timeout=15, interval=0.1)
    assert receiver.spans
    for span in receiver.spans:
        assert not _leaks(span.attributes), span
        assert not _leaks(span.events), span.events


async def test_a_rotated_key_decrypts_old_and_new_messages(
        broker: Broker, vault: ConfigDir, start_router: Any) -> None:
    """A message sealed under pii.v1, then one under pii.v2 after rotate + reload: the SDK
    handler with the new keyring gets both in plain text."""
    router = await start_router(vault, kek=KEK)
    await broker.publish(vault.ingress, payment("old"), type="Payment", message_id="old")
    [old] = await broker.take(vault.name("pay-audit"), 1)
    rotate(vault.path / "keys", "pii", KEK, datetime.now(UTC))
    result = await router.service.reload()
    assert result.ok, result.problems
    assert "data key pii.v2 added" in result.changes
    await broker.publish(vault.ingress, payment("new"), type="Payment", message_id="new")
    [new] = await broker.take(vault.name("pay-audit"), 1)

    kids = [json.loads(m.body)["customer"]["email"]["kid"] for m in (old, new)]
    assert kids == ["pii.v1", "pii.v2"]
    seen: list[dict[str, Any]] = []
    config = vault.load()
    service = Service.from_config("auditor", config, queue=vault.name("pay-audit"),
                                  keyring=keyring_of(config, KEK))

    @service.handler("Payment")
    async def on_payment(body: dict[str, Any], ctx: Context) -> None:
        seen.append(body)

    connection = await aio_pika.connect(AMQP_URL)
    try:
        for message in (old, new):
            await broker.publish("", message.body, routing_key=vault.name("pay-audit"),
                                 type="Payment", headers=dict(message.headers or {}))
        async with service.running(connection):
            async def both() -> bool:
                return len(seen) == 2
            await wait_until(both, timeout=15)
    finally:
        await connection.close()
    assert sorted(b["payment_id"] for b in seen) == ["new", "old"]
    assert all(b["customer"]["email"] == EMAIL and b["customer"]["card"] == CARD for b in seen)


async def test_a_service_without_the_key_gets_a_clear_error(
        broker: Broker, vault: ConfigDir, start_router: Any) -> None:
    """Without keys the handler is not called: the copy is dead-lettered naming the key."""
    await start_router(vault, kek=KEK)
    config = vault.load()
    called: list[Any] = []
    service = Service.from_config("keyless", config, queue=vault.name("pay-audit"))

    @service.handler("Payment")
    async def on_payment(body: dict[str, Any], ctx: Context) -> None:
        called.append(body)

    connection = await aio_pika.connect(AMQP_URL)
    try:
        async with service.running(connection):
            await broker.publish(vault.ingress, payment(), type="Payment", message_id="k-1")
            [dead] = await broker.take(vault.dead_queue, 1, timeout=15)
    finally:
        await connection.close()
    assert called == []
    assert dead.headers["x-mcp-reason"] == "handler_failed"
    assert "holds no data keys" in str(dead.headers["x-mcp-error"])
    assert "pii.v1" in str(dead.headers["x-mcp-error"])


async def test_client_side_sealing_never_shows_the_router_plain_values(
        broker: Broker, vault: ConfigDir, start_router: Any) -> None:
    """A publisher with the keyring seals before sending: the router validates the shape and
    routes, and even the entitled queue gets only ciphertext."""
    await start_router(vault, kek=KEK)
    config = vault.load()
    connection = await aio_pika.connect(AMQP_URL)
    try:
        publisher = await ServicePublisher.open(connection, vault.ingress,
                                                registry=config.registry,
                                                keyring=keyring_of(config, KEK))
        await publisher.publish("Payment", payment("cs-1"), message_id="cs-1")
    finally:
        await connection.close()
    [books] = await broker.take(vault.name("books"), 1)
    [audit] = await broker.take(vault.name("pay-audit"), 1)
    for message in (books, audit):
        assert not _leaks(message.body.decode())
        assert is_sealed(json.loads(message.body)["customer"]["email"])


async def test_replaying_a_sealed_dead_letter_needs_no_key(
        broker: Broker, vault: ConfigDir, start_router: Any) -> None:
    """The dead letter of a refused copy, replayed by ``dlq replay`` (no KEK given), is routed
    again with its fields still sealed."""
    await start_router(vault, kek=KEK)
    await broker.publish(vault.ingress, payment("lost"), type="Payment", message_id="r-1")
    await broker.take(vault.name("books"), 1)
    await broker.take(vault.name("pay-audit"), 1)

    async def dead_lettered() -> bool:
        return await broker.count(vault.dead_queue) == 1
    await wait_until(dead_lettered, timeout=20)

    replay = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "router", "dlq", "replay", "--config", str(vault.path),
        "--amqp-url", AMQP_URL, "--yes"], capture_output=True, text=True, cwd=ROOT,
        timeout=60, check=False, env={"PATH": "/usr/bin:/bin"})
    assert replay.returncode == 0, replay.stderr
    again = await broker.take(vault.name("books"), 1)
    assert not _leaks(again[0].body.decode())
    assert is_sealed(json.loads(again[0].body)["customer"]["card"])


async def test_the_router_refuses_to_start_without_the_kek(vault: ConfigDir) -> None:
    """Sensitive schemas and no key-encryption key: a clear error before connecting."""
    from router.errors import ConfigError  # noqa: PLC0415
    from router.runtime.service import RouterService, Settings  # noqa: PLC0415

    service = RouterService(vault.load(), Settings(AMQP_URL))
    with pytest.raises(ConfigError, match="MCP_KEK_FILE or MCP_KEK"):
        await service.run(asyncio.Event())


async def test_apply_declares_the_vault(vault: ConfigDir) -> None:
    """The configuration with keys and an encryption policy checks and declares."""
    assert await apply(vault) is not None
