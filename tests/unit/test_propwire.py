"""``router.broker.propwire.encode_properties`` writes what pamqp writes, byte for byte.

The reference is ``wire_properties(p).marshal()`` with ``router.broker.wire``
installed (doubles mended), the encoding the router used before it had its own
link.  Property-based over every property present or absent and header values
of every kind the router passes on; and whatever pamqp refuses to encode,
``encode_properties`` refuses too, with an error ``LinkChannel.publish`` turns
into ``Unsendable`` (never bytes pamqp would not have written).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pamqp.exceptions
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.broker import wire
from router.broker.encodable import wire_properties
from router.broker.propwire import encode_properties
from router.core.envelope import Properties

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


_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
_short = st.one_of(st.none(), st.just(""), _text, st.sampled_from(
    ["application/json", "заказ", "🐇" * 63, "x" * 255]))
_INT_EDGES = [0, -1, 127, 128, -128, -129, 255, 256, 32767, 32768, -32768, -32769, 65535,
              65536, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32 - 1, 2**32, 2**63 - 1,
              -(2**63)]
_ints = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from(_INT_EDGES))
_FLOAT_EDGES = [0.0, -0.0, 0.5, 0.1, 1 / 3, 1e300, -1e300, 1e-300, 5e-324, 3.4028234663852886e38,
                3.5e38, 16777217.0, math.inf, -math.inf, math.nan]
_floats = st.one_of(st.floats(), st.floats(width=32), st.sampled_from(_FLOAT_EDGES))
_decimals = st.one_of(
    st.tuples(st.integers(0, 255), st.integers(-(2**31), 2**31 - 1)).map(
        lambda t: Decimal(t[1]).scaleb(-t[0])),
    st.sampled_from([Decimal("1E+3"), Decimal("-0.00"), Decimal("12.50"), Decimal(2**31 - 1)]))
_UTC_DATES = st.datetimes(datetime(1970, 1, 2), datetime(2200, 1, 1))
_datetimes = st.one_of(_UTC_DATES, _UTC_DATES.map(lambda d: d.replace(tzinfo=UTC)),
                       _UTC_DATES.map(lambda d: d.replace(tzinfo=timezone(timedelta(hours=5)))))
_scalars = st.one_of(_text, _ints, st.booleans(), _floats, _decimals, _datetimes, st.none(),
                     st.binary(max_size=20), st.binary(max_size=20).map(bytearray))
_keys = st.one_of(_text, st.sampled_from(["x-mcp-attempts", "traceparent", "x-death", "k" * 128,
                                          "é" * 64]))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.dictionaries(_keys, inner, max_size=4), st.lists(inner, max_size=4),
    st.lists(inner, max_size=3).map(tuple)), max_leaves=12)
_headers = st.dictionaries(_keys, _values, max_size=6)


@st.composite
def _properties(draw: st.DrawFn) -> Properties:
    return Properties(
        content_type=draw(_short), content_encoding=draw(_short), headers=draw(_headers),
        delivery_mode=draw(st.sampled_from([None, 1, 2])),
        priority=draw(st.one_of(st.none(), st.integers(0, 255))),
        correlation_id=draw(_short), reply_to=draw(_short), expiration=draw(_short),
        message_id=draw(_short),
        timestamp=draw(st.one_of(st.none(), _datetimes)),
        type=draw(_short), user_id=draw(_short), app_id=draw(_short))


@FAST
@given(p=_properties())
def test_properties_encode_as_pamqp_encodes_them(p: Properties) -> None:
    assert encode_properties(p) == _reference(p)


@FAST
@given(value=_values)
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
