"""``router.broker.propread.content_header`` reads what the tolerant decoder reads, or declines.

The reference is ``router.broker.wire.unmarshal_header`` (pamqp's
``ContentHeader.unmarshal``, recovered field by field when it raises), the
decoder the link used before it had its own.  "The same" means the same
objects of the same types: ``str`` and ``bytes``, ``int`` and ``bool``,
``list``, ``bytearray``, a float's very bits, a decimal's exponent, a
datetime's zone.  Valid headers come from pamqp's encoder and from the
router's own (``router.broker.propwire``), over every property and header value
the router passes on; on those the hand reader must never decline.  Hostile
headers (``tests.wirestrategies``) and mutated or random bytes must give the
same result or a decline (``None``), never an exception and never a different
result; ``frames.content_header`` then gives exactly what the reference gives.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pamqp.exceptions
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pamqp import commands, header

from router.broker import frames, propread, wire
from router.broker.encodable import wire_properties
from router.broker.propwire import encode_properties
from router.core.envelope import Properties
from tests.propstrategies import properties
from tests.rawamqp import field_table, shortstr
from tests.rawamqp import properties as raw_properties
from tests.wirestrategies import hostile_properties

FAST = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])
UNSENDABLE = (ValueError, TypeError, OverflowError, struct.error,
              pamqp.exceptions.PAMQPException)
_SLOTS = commands.Basic.Properties.__slots__


@pytest.fixture(autouse=True, scope="module")
def _installed() -> Iterator[None]:
    wire.install()  # doubles encoded as doubles, as the router sends them
    yield
    wire.uninstall()


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (NaN and -0.0 by their bits)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, datetime):
        return (a, repr(a.tzinfo), a.fold) == (b, repr(b.tzinfo), b.fold)
    return bool(a == b)


def _same_header(a: header.ContentHeader, b: header.ContentHeader) -> bool:
    fields = ("class_id", "weight", "body_size")
    extra = ("problems", "raw_headers")
    return (type(a.properties) is type(b.properties)
            and all(_same(getattr(a, f), getattr(b, f)) for f in fields)
            and all(_same(getattr(a.properties, s), getattr(b.properties, s)) for s in _SLOTS)
            and all(_same(getattr(a.properties, e, None), getattr(b.properties, e, None))
                    for e in extra))


def _payload(props: bytes, body_size: int = 2) -> bytes:
    return struct.pack(">HHQ", 60, 0, body_size) + props


def _reference(payload: bytes) -> header.ContentHeader | None:
    """What the tolerant decoder gives; None when it raises (a truncated frame)."""
    try:
        return wire.unmarshal_header(payload)
    except pamqp.exceptions.UnmarshalingException:
        return None


def _agrees(payload: bytes) -> header.ContentHeader | None:
    """The hand reader's result, checked against the reference; also ``frames``'s."""
    fast = propread.content_header(payload)
    reference = _reference(payload)
    if fast is not None:
        assert reference is not None
        assert _same_header(fast, reference)
    if reference is not None:
        assert _same_header(frames.content_header(payload), reference)
    else:
        with pytest.raises(pamqp.exceptions.UnmarshalingException):
            frames.content_header(payload)
    return fast


# Valid headers, as pamqp and the router encode them: read by hand, never declined.


@FAST
@given(p=properties(), body_size=st.integers(0, 2**64 - 1))
def test_what_pamqp_encodes_reads_as_pamqp_reads_it(p: Properties, body_size: int) -> None:
    """Every property and header value the router passes on, as pamqp writes them."""
    try:
        payload = header.ContentHeader(0, body_size, wire_properties(p)).marshal()
    except UNSENDABLE:
        assume(False)
    assert _agrees(payload) is not None


@FAST
@given(p=properties())
def test_what_propwire_encodes_reads_as_pamqp_reads_it(p: Properties) -> None:
    """The router's own copies, as ``propwire`` writes them."""
    try:
        payload = _payload(encode_properties(p), 11)
    except UNSENDABLE:
        assume(False)
    assert _agrees(payload) is not None


def test_the_bench_message_reads_by_hand() -> None:
    """The ingress message of ``bench/`` (aio-pika's properties) is read by hand."""
    props = commands.Basic.Properties(
        content_type="application/json", delivery_mode=2, priority=0,
        message_id="6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11", message_type="OrderCreated",
        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                 "x-bench-sent": 1_861_748_810_021})
    fast = _agrees(header.ContentHeader(0, 271, props).marshal())
    assert fast is not None
    assert fast.properties.headers["x-bench-sent"] == 1_861_748_810_021


_TYPED_VALUES = [
    b"t\x00", b"t\x01", b"t\xff", b"b\xff", b"B\xff", b"s\xff\xfe", b"u\xff\xfe",
    b"I\xff\xff\xff\xfe", b"i\xff\xff\xff\xfe", b"l" + b"\xff" * 8, b"L" + b"\xff" * 8,
    b"L\x7f" + b"\xff" * 7, b"f\x7f\xc0\x00\x01", b"f\x80\x00\x00\x00",
    b"d\x7f\xf8" + b"\x01" * 6, b"d\x80" + b"\x00" * 7,
    b"D\x02\xff\xff\xff\x85", b"D\x00\x00\x00\x00\x07", b"D\xff\x7f\xff\xff\xff",
    b"T\x00\x00\x00\x00\x69\x2a\x80\x00", b"T\x00\x00\x01\x9a\xb6\x31\x6d\x40",
    b"S\x00\x00\x00\x02\xff\xfe", b"S\x00\x00\x00\x02\xc3\xa9", b"S\x00\x00\x00\x00",
    b"x\x00\x00\x00\x03abc", b"V", b"\x00", b"F\x00\x00\x00\x00", b"A\x00\x00\x00\x00",
    b"A\x00\x00\x00\x04VVt\x01", b"F" + field_table([(b"", b"V"), (b"a", b"b\x01")]),
]


@pytest.mark.parametrize("value", _TYPED_VALUES, ids=repr)
def test_every_field_type_reads_as_pamqp_reads_it(value: bytes) -> None:
    """Signed and unsigned, NaN bits, decimals, seconds and milliseconds, bytes, void."""
    payload = _payload(raw_properties({"headers": field_table([(b"v", value)])}))
    assert _agrees(payload) is not None


def test_duplicate_keys_read_as_pamqp_reads_them() -> None:
    """The last value wins, in the first one's place."""
    table = field_table([(b"a", b"b\x01"), (b"b", b"b\x02"), (b"a", b"b\x03")])
    fast = _agrees(_payload(raw_properties({"headers": table})))
    assert fast is not None
    assert list(fast.properties.headers.items()) == [("a", 3), ("b", 2)]


def test_every_property_at_once_reads_by_hand() -> None:
    """All fourteen properties, the empty cluster id included, in their wire order."""
    fields = {name: shortstr(name.encode()) for name in _SLOTS}
    fields |= {"headers": field_table([(b"k", b"V")]), "delivery_mode": b"\x02",
               "priority": b"\x09", "timestamp": struct.pack(">Q", 1_700_000_000),
               "cluster_id": shortstr(b"")}
    assert _agrees(_payload(raw_properties(fields))) is not None


def _nested(depth: int) -> bytes:
    value = b"V"
    for _ in range(depth):
        value = b"F" + field_table([(b"n", value)])
    return value


@pytest.mark.parametrize(("name", "props"), [
    ("a second flag word", b"\x00\x01\x00\x00"),
    ("the reserved flag bit", b"\x00\x02"),
    ("a short string past the end", b"\x00\x80\x05abc"),
    ("a short string not in UTF-8", b"\x00\x80\x02\xff\xfe"),
    ("a key not in UTF-8", raw_properties({"headers": field_table([(b"\xff", b"V")])})),
    ("an unknown field type", raw_properties({"headers": field_table([(b"k", b"Z\x01")])})),
    ("a table past the end", b"\x20\x00\x00\x00\x00\x09\x01kV"),
    ("a key at the table's end", b"\x20\x00\x00\x00\x00\x02\x01k"),
    ("a value past its table", b"\x20\x00\x00\x00\x00\x03\x01kt\x01"),
    ("a long string past its table", b"\x20\x00\x00\x00\x00\x08\x01kS\x00\x00\x00\x01ab"),
    ("an array past its table", b"\x20\x00\x00\x00\x00\x07\x01kA\x00\x00\x00\x01V"),
    ("a table nested too deep", raw_properties(
        {"headers": field_table([(b"n", _nested(propread.MAX_DEPTH + 1))])})),
    ("delivery mode 7", raw_properties({"delivery_mode": b"\x07"})),
    ("a cluster id", raw_properties({"cluster_id": shortstr(b"c")})),
    ("a timestamp of 2^63", raw_properties({"timestamp": struct.pack(">Q", 2**63)})),
    ("bytes after the last property", raw_properties({"priority": b"\x01"}) + b"\x00"),
    ("a truncated octet", b"\x08\x00"),
])
def test_what_it_is_not_sure_of_is_declined(name: str, props: bytes) -> None:
    """Each goes to the tolerant decoder, which gives what it always gave."""
    assert _agrees(_payload(props)) is None


@pytest.mark.parametrize("payload", [
    b"", b"\x00<", b"\x00<\x00\x00" + b"\x00" * 8, b"\x00<\x00\x00" + b"\x00" * 8 + b"\x80",
    struct.pack(">HHQH", 61, 0, 0, 0), struct.pack(">HHQH", 60, 1, 0, 0)], ids=repr)
def test_a_frame_too_short_or_of_another_class_is_declined(payload: bytes) -> None:
    """No flags, half a flag word, class 61 or a weight: the tolerant decoder's."""
    assert _agrees(payload) is None


# Hostile and damaged headers: the same result or a decline, never anything else.


@FAST
@given(props=hostile_properties(), body_size=st.integers(0, 2**64 - 1))
def test_a_hostile_header_reads_as_the_reference_reads_it_or_is_declined(
        props: dict[str, bytes], body_size: int) -> None:
    """Every field type in and out of range, bad UTF-8, deep tables, frame-filling values."""
    _agrees(_payload(raw_properties(props), body_size))


_EDITS = st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "delete"]),
                            st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=4)


def _mutated(payload: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(payload)
    for kind, where, byte in edits:
        at = where % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] ^= byte or 1
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data.insert(at, byte)
        elif at < len(data):
            del data[at]
    return bytes(data)


@FAST
@given(p=properties(), edits=_EDITS)
def test_a_damaged_header_reads_as_the_reference_reads_it_or_is_declined(
        p: Properties, edits: list[tuple[str, int, int]]) -> None:
    """A valid header with bytes flipped, inserted, deleted or cut off."""
    try:
        payload = _payload(encode_properties(p), 11)
    except UNSENDABLE:
        assume(False)
    _agrees(_mutated(payload, edits))


@FAST
@given(flags=st.integers(0, 0xFFFF), rest=st.binary(max_size=80))
def test_random_bytes_read_as_the_reference_reads_them_or_are_declined(
        flags: int, rest: bytes) -> None:
    """Any flag word followed by any bytes."""
    _agrees(_payload(struct.pack(">H", flags) + rest))
