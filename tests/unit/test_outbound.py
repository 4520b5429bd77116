"""What the router sends: routed copies and dead letters."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from router.core import headers as xmcp
from router.core.envelope import Envelope
from router.core.outbound import (
    MAX_ERROR_LENGTH,
    copy_properties,
    dead_letter_properties,
    dead_letter_routing_key,
)
from router.core.outcome import Copy, DeadCopy, DeadLetter, Reason
from tests.unit.conftest import make_envelope

TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
NOW = datetime(2024, 5, 1, 12, 30, 45, 123456, tzinfo=UTC)
SPEC_HEADERS = {
    "x-mcp-reason", "x-mcp-error", "x-mcp-original-exchange", "x-mcp-original-routing-key",
    "x-mcp-attempts", "x-mcp-dead-lettered-at",
}


def inbound() -> Envelope:
    """A message with a publisher, a forged router header, an old trace and app headers."""
    return make_envelope(
        {"a": 1},
        routing_key="order.created",
        type="OrderCreated",
        message_id="m-1",
        content_type="application/json",
        user_id="alice",
        app_id="shop",
        headers={
            "x-tenant": "acme",
            "x-mcp-reason": "forged",
            "x-mcp-publisher": "mallory",
            "x-mcp-route": "forged-route",
            "x-delivery-count": 3,
            "traceparent": "00-11111111111111111111111111111111-2222222222222222-01",
            "tracestate": "old=1",
        },
    )


def test_copy_moves_user_id_to_publisher_header() -> None:
    """A copy has no user_id; the publisher identity travels in x-mcp-publisher."""
    props = copy_properties(inbound(), Copy("r", "orders", "k"), TRACE)

    assert props.user_id is None
    assert props.headers["x-mcp-publisher"] == "alice"


def test_copy_without_user_id_has_no_publisher_header() -> None:
    """Without a validated user_id there is no x-mcp-publisher (a forged one is dropped)."""
    env = make_envelope({}, headers={"x-mcp-publisher": "mallory"})

    props = copy_properties(env, Copy("r", "orders", "k"), TRACE)

    assert "x-mcp-publisher" not in props.headers


def test_copy_strips_inbound_router_headers() -> None:
    """Inbound x-mcp-* and x-delivery-count headers are not trusted or passed on."""
    props = copy_properties(inbound(), Copy("r", "orders", "k"), TRACE)

    router_headers = {k for k in props.headers if k.startswith("x-mcp-")}
    assert router_headers == {"x-mcp-publisher", "x-mcp-route"}
    assert "x-delivery-count" not in props.headers


def test_copy_names_its_route() -> None:
    """x-mcp-route is the name of the route that produced the copy."""
    props = copy_properties(inbound(), Copy("big-orders", "orders", "k"), TRACE)

    assert props.headers["x-mcp-route"] == "big-orders"


def test_copy_carries_the_given_trace_context() -> None:
    """The inbound traceparent and tracestate are replaced by the ones given."""
    props = copy_properties(inbound(), Copy("r", "orders", "k"), TRACE)

    assert props.headers["traceparent"] == TRACE["traceparent"]
    assert "tracestate" not in props.headers


def test_copy_keeps_other_properties_and_headers() -> None:
    """Everything else (type, message_id, content_type, app headers) is kept."""
    env = inbound()

    props = copy_properties(env, Copy("r", "orders", "k"), TRACE)

    assert props.headers["x-tenant"] == "acme"
    assert (props.type, props.message_id, props.content_type, props.app_id) == (
        "OrderCreated", "m-1", "application/json", "shop")


def test_copy_does_not_modify_the_inbound_message() -> None:
    """Building a copy leaves the inbound envelope's headers untouched."""
    env = inbound()
    before = dict(env.properties.headers)

    copy_properties(env, Copy("r", "orders", "k"), TRACE)

    assert dict(env.properties.headers) == before
    assert env.properties.user_id == "alice"


def test_dead_letter_has_every_spec_header() -> None:
    """A dead letter carries each x-mcp-* header of the SPEC with the right values."""
    dead = DeadLetter(Reason.SCHEMA_INVALID, "/total: minimum: -1 < 0", "OrderCreated")

    props = dead_letter_properties(inbound(), dead, attempts=1, now=NOW, trace=TRACE)

    headers = props.headers
    assert set(headers) >= SPEC_HEADERS
    assert headers["x-mcp-reason"] == "schema_invalid"
    assert headers["x-mcp-error"] == "/total: minimum: -1 < 0"
    assert headers["x-mcp-original-exchange"] == "mcp.ingress"
    assert headers["x-mcp-original-routing-key"] == "order.created"
    assert headers["x-mcp-attempts"] == 1
    assert headers["x-mcp-dead-lettered-at"] == "2024-05-01T12:30:45.123Z"
    assert headers["x-mcp-publisher"] == "alice"
    assert headers["traceparent"] == TRACE["traceparent"]
    assert props.user_id is None


def test_dead_letter_timestamp_is_iso_utc_with_z() -> None:
    """x-mcp-dead-lettered-at is ISO 8601 UTC ending in Z and parses back to ``now``."""
    dead = DeadLetter(Reason.MALFORMED, "x")

    props = dead_letter_properties(inbound(), dead, attempts=1, now=NOW, trace={})

    stamp = props.headers["x-mcp-dead-lettered-at"]
    assert stamp.endswith("Z")
    assert datetime.fromisoformat(stamp) == NOW.replace(microsecond=123000)


def test_dead_letter_replaces_forged_router_headers() -> None:
    """Inbound x-mcp-* values never survive into a dead letter."""
    dead = DeadLetter(Reason.MALFORMED, "bad body")

    props = dead_letter_properties(inbound(), dead, attempts=2, now=NOW, trace={})

    assert props.headers["x-mcp-reason"] == "malformed"
    assert props.headers["x-mcp-publisher"] == "alice"
    assert "x-mcp-route" not in props.headers
    assert "x-delivery-count" not in props.headers


def test_dead_letter_of_a_copy_names_its_route() -> None:
    """A copy that could not be delivered is dead-lettered with its route."""
    dead = DeadCopy(Reason.RETRIES_EXHAUSTED, "nack", "OrderCreated",
                    Copy("big", "orders", "order.big"))

    props = dead_letter_properties(inbound(), dead, attempts=3, now=NOW, trace={})

    assert props.headers["x-mcp-route"] == "big"
    assert props.headers["x-mcp-destination-exchange"] == "orders"
    assert props.headers["x-mcp-destination-routing-key"] == "order.big"
    assert props.headers["x-mcp-attempts"] == 3


def test_dead_letter_error_is_bounded() -> None:
    """A very long error is cut to ``MAX_ERROR_LENGTH`` characters plus ``...``."""
    dead = DeadLetter(Reason.SCHEMA_INVALID, "e" * (MAX_ERROR_LENGTH * 3))

    props = dead_letter_properties(inbound(), dead, attempts=1, now=NOW, trace={})

    assert props.headers["x-mcp-error"] == "e" * MAX_ERROR_LENGTH + "..."


@pytest.mark.parametrize(
    ("dead", "key"),
    [
        (DeadLetter(Reason.SCHEMA_INVALID, "", "OrderCreated"), "schema_invalid.OrderCreated"),
        (DeadLetter(Reason.UNKNOWN_TYPE, "", None), "unknown_type.unknown"),
        (DeadLetter(Reason.UNROUTABLE, "", "a.b"), "unroutable.a.b"),
    ],
)
def test_dead_letter_routing_key_is_reason_dot_type(dead: DeadLetter, key: str) -> None:
    """The dead-letter routing key is ``<reason>.<Type>``, ``unknown`` without a type."""
    assert dead_letter_routing_key(dead) == key


@pytest.mark.parametrize("char", ["x", "é", "€", "😀"])
def test_dead_letter_routing_key_fits_a_shortstr(char: str) -> None:
    """A key longer than 255 bytes is truncated to valid UTF-8 of at most 255 bytes."""
    dead = DeadLetter(Reason.MALFORMED, "", char * 300)

    key = dead_letter_routing_key(dead)

    assert len(key.encode("utf-8")) <= 255
    assert len(key.encode("utf-8")) > 250
    assert key.startswith("malformed." + char)
    assert set(key.removeprefix("malformed.")) == {char}


def test_dead_letter_of_undecodable_headers_keeps_their_raw_bytes() -> None:
    """The header table that did not decode travels as a byte array in x-mcp-raw-headers."""
    envelope = replace(inbound(), defects=("header key b'\\xff' is not UTF-8",),
                       raw_headers=b"\x00\x00\x00\x03\x01\xffV")
    dead = DeadLetter(Reason.MALFORMED, "header key b'\\xff' is not UTF-8", "OrderCreated")

    props = dead_letter_properties(envelope, dead, attempts=1, now=NOW, trace=TRACE)

    assert props.headers[xmcp.RAW_HEADERS] == bytearray(b"\x00\x00\x00\x03\x01\xffV")


def test_a_forged_raw_headers_header_is_not_carried() -> None:
    """x-mcp-raw-headers is the router's: a publisher's own is dropped like any x-mcp-*."""
    base = inbound()
    envelope = replace(base, properties=base.properties.with_headers(
        {**base.properties.headers, xmcp.RAW_HEADERS: b"forged"}))
    dead = DeadLetter(Reason.SCHEMA_INVALID, "x", "OrderCreated")

    props = dead_letter_properties(envelope, dead, attempts=1, now=NOW, trace=TRACE)

    assert xmcp.RAW_HEADERS not in props.headers
