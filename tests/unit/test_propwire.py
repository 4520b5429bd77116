"""``router.broker.propwire.encode_properties`` writes what pamqp writes, byte for byte.

The reference is ``wire_properties(p).marshal()`` with ``router.broker.wire``
installed (doubles mended), the encoding the router used before it had its own
link.  Property-based over every property present or absent and header values
of every kind the router passes on (``tests.propstrategies``); and whatever
pamqp refuses to encode, ``encode_properties`` refuses too, with an error
``LinkChannel.publish`` turns into ``Unsendable`` (never bytes pamqp would not
have written).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pamqp.exceptions
import pytest
from hypothesis import given, settings

from router.broker import wire
from router.broker.encodable import wire_properties
from router.broker.propwire import encode_properties
from router.core.envelope import Properties
from tests.propstrategies import header_values, properties

# What LinkChannel.publish catches and reports as Unsendable.
UNSENDABLE = (ValueError, TypeError, OverflowError, struct.error,
              pamqp.exceptions.PAMQPException)
FAST = settings(max_examples=150, deadline=None, database=None)


@pytest.fixture(autouse=True, scope="module")
def _installed() -> Iterator[None]:
    wire.install()
    yield
    wire.uninstall()


def _reference(p: Properties) -> bytes:
    return wire_properties(p).marshal()


@FAST
@given(p=properties())
def test_properties_encode_as_pamqp_encodes_them(p: Properties) -> None:
    assert encode_properties(p) == _reference(p)


@FAST
@given(value=header_values)
def test_every_header_value_encodes_as_pamqp_encodes_it(value: Any) -> None:
    p = Properties(headers={"v": value}, message_id="m")
    assert encode_properties(p) == _reference(p)


_NAMES = ["content_type", "content_encoding", "correlation_id", "reply_to", "expiration",
          "message_id", "type", "user_id", "app_id"]


@pytest.mark.parametrize("name", _NAMES)
@pytest.mark.parametrize("text", ["", "a", "é" * 127, "x" * 255])
def test_each_short_string_property_alone(name: str, text: str) -> None:
    """Present or absent (empty is absent, as pamqp has it) at every flag position."""
    fields: dict[str, Any] = {name: text}
    p = Properties(**fields)
    assert encode_properties(p) == _reference(p)


@pytest.mark.parametrize(("name", "value"), [
    ("delivery_mode", 1), ("delivery_mode", 2), ("priority", 0), ("priority", 255),
    ("timestamp", datetime(1970, 1, 1, tzinfo=UTC)), ("timestamp", datetime(2106, 2, 7)),
    ("headers", {}), ("headers", {"": ""})])
def test_each_other_property_alone(name: str, value: Any) -> None:
    p = Properties(**{name: value})
    assert encode_properties(p) == _reference(p)


def test_every_property_at_once() -> None:
    p = Properties(
        content_type="application/json", content_encoding="gzip",
        headers={"a": 1, "b": [0.1, b"\xff", {"c": None}], "d": Decimal("1.5"),
                 "e": datetime(2026, 1, 1, tzinfo=UTC), "f": True, "g": bytearray(b"x")},
        delivery_mode=2, priority=9, correlation_id="c", reply_to="r", expiration="60000",
        message_id="m", timestamp=datetime(2026, 11, 24, 10, tzinfo=UTC), type="T",
        user_id="guest", app_id="mcp-router")
    assert encode_properties(p) == _reference(p)


def test_a_double_that_32_bits_cannot_hold_is_written_as_a_double() -> None:
    """The mend ``wire.install`` makes: 0.1 and 1e300 as ``d``, 0.5 as ``f``."""
    raw = encode_properties(Properties(headers={"a": 0.1, "b": 1e300, "c": 0.5}))
    assert b"\x01ad" + struct.pack(">d", 0.1) in raw
    assert b"\x01bd" + struct.pack(">d", 1e300) in raw
    assert b"\x01cf" + struct.pack(">f", 0.5) in raw


def test_a_key_longer_than_128_bytes_is_truncated_as_pamqp_does() -> None:
    p = Properties(headers={"k" * 130: 1, "é" * 65: "v", "short": {"n" * 200: [1, "x"]}})
    assert encode_properties(p) == _reference(p)


# Values pamqp cannot encode: each raises in both, never becomes bytes.
_UNENCODABLE: list[Any] = [
    2**63, -(2**63) - 1, 2**64, 10**30,
    Decimal("NaN"), Decimal("Infinity"), Decimal(2**31), Decimal(1).scaleb(-256),
    datetime(1969, 12, 31, tzinfo=UTC), datetime(1, 1, 1),
    "\ud800", {"k": "\udfff"}, ["ok", {"deep": [2**70]}],
    {1, 2}, frozenset(), complex(1, 2), object(), memoryview(b"x"), range(3), Ellipsis,
]


@pytest.mark.parametrize("value", _UNENCODABLE, ids=repr)
@pytest.mark.parametrize("where", ["top", "table", "array"])
def test_a_header_pamqp_cannot_encode_raises(value: Any, where: str) -> None:
    wrapped = {"top": value, "table": {"inner": value}, "array": [1, value]}[where]
    p = Properties(headers={"h": wrapped})
    with pytest.raises(UNSENDABLE):
        _reference(p)
    with pytest.raises(UNSENDABLE):
        encode_properties(p)


@pytest.mark.parametrize("changes", [
    {"message_id": "x" * 256}, {"app_id": "é" * 128}, {"type": "\ud800"},
    {"priority": 256}, {"priority": -1},
    {"timestamp": datetime(1969, 12, 31, 23, 59, tzinfo=UTC)},
    {"timestamp": datetime(9999, 12, 31)},
], ids=repr)
def test_a_property_pamqp_cannot_encode_raises(changes: dict[str, Any]) -> None:
    p = Properties(**changes)
    try:
        reference = _reference(p)
    except UNSENDABLE:
        with pytest.raises(UNSENDABLE):
            encode_properties(p)
    else:  # pamqp writes it (a year-9999 timestamp fits 64 bits): so must we, the same
        assert encode_properties(p) == reference


# Found while writing these tests: inputs where propwire and pamqp parted ways (fixed).


@pytest.mark.parametrize("mode", [0, 3, 255])
def test_a_delivery_mode_pamqp_refuses_is_refused(mode: int) -> None:
    p = Properties(delivery_mode=mode)
    with pytest.raises(ValueError, match="delivery_mode"):
        _reference(p)
    with pytest.raises(UNSENDABLE):
        encode_properties(p)


@pytest.mark.parametrize("headers", [
    {"k" * 130: b"raw"}, {"k" * 130: 1, "b": b"raw"}, {"t": {"k" * 130: [b"raw"]}}], ids=repr)
def test_bytes_beside_a_long_key_encode_as_pamqp_encodes_them(headers: dict[str, Any]) -> None:
    p = Properties(headers=headers)
    assert encode_properties(p) == _reference(p)


def test_a_nested_table_with_a_key_that_is_not_a_string() -> None:
    p = Properties(headers={"n": {1: "a", 2: [b"x"]}})
    assert encode_properties(p) == _reference(p)
