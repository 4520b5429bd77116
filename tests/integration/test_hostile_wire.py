"""No property or header a publisher can put on the wire stops the router or costs others.

Each hostile message is published with a hand-built content header (``tests.rawamqp``),
followed by healthy messages that must all be routed within a few seconds while
only the hostile one is dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import signal
import struct

import pytest

from tests.integration.conftest import AMQP_URL, Broker, ConfigDir, apply, order_created
from tests.rawamqp import RawPublisher, field_table, properties, shortstr

HEALTHY = 20
PROMPT = 5.0  # seconds for every healthy message to be routed


def _table(*entries: tuple[bytes, bytes]) -> bytes:
    return field_table(list(entries))


def _nested(depth: int) -> bytes:
    """A header value: ``depth`` tables, each holding the next under key ``n``."""
    value = b"V"
    for _ in range(depth):
        value = b"F" + _table((b"n", value))
    return value


def _base(message_id: bytes = b"hostile") -> dict[str, bytes]:
    return {"message_id": shortstr(message_id), "message_type": shortstr(b"OrderCreated"),
            "delivery_mode": b"\x02"}


BIG_TS = struct.pack(">Q", 2**63)
CASES = [
    pytest.param({"timestamp": BIG_TS}, "property timestamp does not decode", False,
                 id="timestamp-property-2^63"),
    pytest.param({"headers": _table((b"x-when", b"T" + BIG_TS), (b"x-ok", b"b\x05"))},
                 "header 'x-when' (T) does not decode", True, id="timestamp-header-2^63"),
    pytest.param({"headers": _table((b"x-deep", _nested(600)), (b"x-ok", b"b\x05"))},
                 "header 'x-deep' (F) does not decode: RecursionError", True,
                 id="table-600-deep"),
    pytest.param({"headers": _table((b"x-\xff\xfe", b"b\x01"), (b"x-ok", b"b\x05"))},
                 "header key b'x-\\xff\\xfe' is not UTF-8", True, id="header-key-not-utf8"),
    pytest.param({"message_id": shortstr(b"id-\xff\xfe")}, "property message_id is not UTF-8",
                 False, id="message-id-not-utf8"),
    pytest.param({"app_id": shortstr(b"\xc3")}, "property app_id is not UTF-8", False,
                 id="app-id-not-utf8"),
    pytest.param({"headers": _table((b"x-" + b"k" * 200, b"b\x01"))},
                 "longer than 128 bytes", False, id="header-key-200-bytes"),
    pytest.param({"headers": _table((b"x-outer", b"F" + _table((b"k" * 130, b"b\x01"))))},
                 "header 'x-outer' has a key longer than 128 bytes", False,
                 id="nested-key-130-bytes"),
    pytest.param({"headers": _table((b"x-deep", _nested(100)))},
                 "header 'x-deep' is nested more than 64 deep", False, id="table-100-deep"),
]


async def _hostile_then_healthy(broker: Broker, config_dir: ConfigDir, fields: dict[str, bytes],
                                body: bytes) -> str:
    raw = await RawPublisher.open(AMQP_URL)
    try:
        verdict = await raw.publish(config_dir.ingress, "rk.hostile", properties(fields), body)
    finally:
        await raw.close()
    await broker.publish_many(config_dir.ingress, [
        (json.dumps(order_created()).encode(), {"type": "OrderCreated", "message_id": f"ok-{i}"})
        for i in range(HEALTHY)])
    return verdict


@pytest.mark.parametrize(("fields", "error", "raw_kept"), CASES)
async def test_hostile_properties_cost_only_their_own_message(
        broker: Broker, config_dir: ConfigDir, start_router, fields: dict[str, bytes],
        error: str, raw_kept: bool) -> None:
    """A hostile property or header is dead-lettered as malformed; the healthy ones flow."""
    router = await start_router(config_dir)
    body = json.dumps(order_created()).encode()

    verdict = await _hostile_then_healthy(broker, config_dir, {**_base(), **fields}, body)

    assert verdict == "ack"
    routed = await broker.take(config_dir.name("billing"), HEALTHY, timeout=PROMPT)
    [dead] = await broker.take(config_dir.dead_queue, 1)
    assert sorted(m.message_id for m in routed) == sorted(f"ok-{i}" for i in range(HEALTHY))
    assert dead.body == body
    assert dead.headers["x-mcp-reason"] == "malformed"
    assert error in dead.headers["x-mcp-error"]
    assert ("x-mcp-raw-headers" in dead.headers) is raw_kept
    if raw_kept:
        assert b"x-ok" in bytes(dead.headers["x-mcp-raw-headers"])
        assert dead.headers["x-ok"] == 5  # what decoded of the table is kept as it was
    assert await broker.count(config_dir.dead_queue) == 0
    assert router.service.metrics.malformed_deliveries.labels(
        "undecodable" if raw_kept or "is not UTF-8" in error or "does not decode" in error
        else "unsendable")._value.get() == 1


async def test_publisher_set_delivery_count_is_not_a_counter(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """x-delivery-count from a publisher neither overflows nor counts: attempts stays 1."""
    await start_router(config_dir)
    for i, count in enumerate((2**63 - 1, 1000)):
        await broker.publish(config_dir.ingress, b'{"order_id": "x"}', type="OrderCreated",
                             message_id=f"forged-{i}", headers={"x-delivery-count": count,
                                                                "x-mcp-attempts": count})
    await broker.publish_many(config_dir.ingress, [
        (json.dumps(order_created()).encode(), {"type": "OrderCreated", "message_id": f"ok-{i}"})
        for i in range(HEALTHY)])

    await broker.take(config_dir.name("billing"), HEALTHY, timeout=PROMPT)
    dead = await broker.take(config_dir.dead_queue, 2)

    assert sorted(d.message_id for d in dead) == ["forged-0", "forged-1"]
    assert {d.headers["x-mcp-reason"] for d in dead} == {"schema_invalid"}
    assert [d.headers["x-mcp-attempts"] for d in dead] == [1, 1]



async def test_values_at_the_edges_of_their_types_are_routed_intact(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """Extreme but encodable values of every field type reach the destination unchanged."""
    await start_router(config_dir)
    headers = _table(
        (b"x-u64", b"L" + struct.pack(">Q", 2**64 - 1)),
        (b"x-u32", b"i" + struct.pack(">I", 2**32 - 1)),
        (b"x-dec", b"D\xff" + struct.pack(">i", -(2**31))),
        (b"x-f", b"f" + struct.pack(">f", 3e38)),
        (b"x-bytes", b"S" + struct.pack(">I", 2) + b"\xff\xfe"), (b"x-void", b"V"),
        (b"x-deep", _nested(30)), (b"x-zero-time", b"T" + struct.pack(">Q", 0)),
        (b"x-big", b"d" + struct.pack(">d", 1e300)), (b"x-tenth", b"d" + struct.pack(">d", 0.1)))
    body = json.dumps(order_created()).encode()
    fields = {**_base(b"edge"), "headers": headers}

    verdict = await _hostile_then_healthy(broker, config_dir, fields, body)

    assert verdict == "ack"
    routed = await broker.take(config_dir.name("billing"), HEALTHY + 1, timeout=PROMPT)
    [edge] = [m for m in routed if m.message_id == "edge"]
    assert edge.headers["x-u64"] == -1  # pamqp reads L as signed, as RabbitMQ writes it
    assert edge.headers["x-u32"] == 2**32 - 1
    assert (edge.headers["x-big"], edge.headers["x-tenth"]) == (1e300, 0.1)  # doubles, exactly
    assert bytes(edge.headers["x-bytes"]) == b"\xff\xfe"
    assert "x-void" in edge.headers
    assert edge.headers["x-void"] is None
    assert await broker.count(config_dir.dead_queue) == 0


async def test_a_forged_log_line_in_a_message_stays_inside_its_own_line(
        broker: Broker, config_dir: ConfigDir, router_process) -> None:
    """message_id and type with a newline and a fake prefix do not forge a log line."""
    forged = "\n2026-12-01 08:00:00,000 ERROR router.runtime.service: FORGED"
    await apply(config_dir)
    router = router_process(config_dir)
    await broker.publish(config_dir.ingress, b'{"order_id": "x"}', type="OrderCreated",
                         message_id=f"evil{forged}")
    await broker.publish(config_dir.ingress, b"{}", type=f"Evil{forged}", message_id="evil-2")

    dead = await broker.take(config_dir.dead_queue, 2, timeout=30)
    router.proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(router.proc.wait, 30)

    assert len(dead) == 2
    lines = router.output().splitlines()
    assert any("evil\\n2026-12-01" in line for line in lines), router.output()
    assert not any(line.startswith("2026-12-01 08:00:00,000 ERROR") for line in lines)
    assert not any("FORGED" in line and not line.startswith(lines[0][:4]) for line in lines)


async def test_a_header_table_near_the_frame_limit_costs_only_its_message(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """Headers the broker took in one frame, which the router's additions would push past
    frame_max, are dead-lettered without them; the connection and the others are untouched."""
    router = await start_router(config_dir)
    big = b"y" * 130_900
    fields = {**_base(b"huge"), "content_type": shortstr(b"text/plain"),
              "headers": _table((b"x-big", b"S" + struct.pack(">I", len(big)) + big))}
    body = json.dumps(order_created()).encode()

    verdict = await _hostile_then_healthy(broker, config_dir, fields, body)

    assert verdict == "ack"
    routed = await broker.take(config_dir.name("billing"), HEALTHY, timeout=PROMPT)
    [dead] = await broker.take(config_dir.dead_queue, 1)
    assert len(routed) == HEALTHY
    assert dead.headers["x-mcp-reason"] == "malformed"
    assert "frame" in dead.headers["x-mcp-error"]
    assert router.service.metrics.sessions_lost._value.get() == 0


async def test_an_undecodable_table_near_the_frame_limit_is_dead_lettered_without_it(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """When the raw table cannot fit in the dead letter's frame it is left out, and said so."""
    router = await start_router(config_dir)
    big = b"y" * 125_000
    fields = {**_base(b"huge-raw"), "headers": _table(
        (b"x-deep", _nested(600)), (b"x-big", b"S" + struct.pack(">I", len(big)) + big))}
    body = json.dumps(order_created()).encode()

    verdict = await _hostile_then_healthy(broker, config_dir, fields, body)

    assert verdict == "ack"
    routed = await broker.take(config_dir.name("billing"), HEALTHY, timeout=PROMPT)
    [dead] = await broker.take(config_dir.dead_queue, 1)
    assert len(routed) == HEALTHY
    assert "RecursionError" in dead.headers["x-mcp-error"]
    assert "is left out too" in dead.headers["x-mcp-error"]
    assert "x-mcp-raw-headers" not in dead.headers
    assert router.service.metrics.sessions_lost._value.get() == 0


async def test_a_routing_key_that_is_not_utf8_costs_only_its_message(
        broker: Broker, config_dir: ConfigDir, start_router) -> None:
    """pamqp refuses the basic.deliver of a non-UTF-8 routing key: only that message is hit."""
    router = await start_router(config_dir)
    raw = await RawPublisher.open(AMQP_URL)
    try:
        verdict = await raw.publish(config_dir.ingress, b"rk.\xff\xfe", properties(_base()),
                                    json.dumps(order_created()).encode())
    finally:
        await raw.close()
    await broker.publish_many(config_dir.ingress, [
        (json.dumps(order_created()).encode(), {"type": "OrderCreated", "message_id": f"ok-{i}"})
        for i in range(HEALTHY)])

    assert verdict == "ack"
    routed = await broker.take(config_dir.name("billing"), HEALTHY, timeout=PROMPT)
    [dead] = await broker.take(config_dir.dead_queue, 1)
    assert len(routed) == HEALTHY
    assert dead.headers["x-mcp-reason"] == "malformed"
    assert "routing key b'rk.\\xff\\xfe' is not UTF-8" in dead.headers["x-mcp-error"]
    assert router.service.metrics.sessions_lost._value.get() == 0
