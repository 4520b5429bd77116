"""Hypothesis strategies for hostile AMQP content headers, as raw bytes (``tests.rawamqp``).

Every property, and header tables holding every field type with values in and
out of range, invalid UTF-8, keys too long, tables and arrays nested up to 700
deep, unknown type tags, values that fill a frame, and the names a forger
would try (``x-delivery-count``, ``x-mcp-attempts``...).
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import strategies as st

from tests.rawamqp import field_table, shortstr

__all__ = ["hostile_properties"]

def _packed(tag: bytes, fmt: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return values.map(lambda v: tag + struct.pack(fmt, v))


_raw_bytes = st.binary(max_size=40)
_text_bytes = st.one_of(st.text(max_size=20).map(lambda s: s.encode("utf-8", "surrogatepass")),
                        _raw_bytes)
_SCALARS: list[st.SearchStrategy[bytes]] = [
    st.integers(0, 255).map(lambda v: b"t" + bytes([v])),
    _packed(b"b", ">b", st.integers(-128, 127)), _packed(b"B", ">B", st.integers(0, 255)),
    _packed(b"s", ">h", st.integers(-(2**15), 2**15 - 1)),
    _packed(b"u", ">H", st.integers(0, 2**16 - 1)),
    _packed(b"I", ">i", st.integers(-(2**31), 2**31 - 1)),
    _packed(b"i", ">I", st.integers(0, 2**32 - 1)),
    _packed(b"l", ">q", st.integers(-(2**63), 2**63 - 1)),
    _packed(b"L", ">Q", st.integers(0, 2**64 - 1)),
    _packed(b"f", ">f", st.floats(width=32, allow_nan=False, allow_infinity=False)),
    _packed(b"d", ">d", st.floats(allow_nan=False, allow_infinity=False)),
    st.binary(min_size=4, max_size=4).map(lambda b: b"f" + b),  # any bits: NaN, inf too
    st.binary(min_size=8, max_size=8).map(lambda b: b"d" + b),
    st.tuples(st.integers(0, 255), st.integers(-(2**31), 2**31 - 1)).map(
        lambda t: b"D" + struct.pack(">Bi", *t)),
    _packed(b"T", ">Q", st.one_of(st.integers(0, 2**64 - 1), st.sampled_from(
        [0, 2**31, 2**32 - 1, 2**32, 2**53, 2**63 - 1, 2**63, 2**64 - 1]))),
    _text_bytes.map(lambda b: b"S" + struct.pack(">I", len(b)) + b),
    _raw_bytes.map(lambda b: b"x" + struct.pack(">I", len(b)) + b),
    st.just(b"V"),
    st.sampled_from([b"Z\x01", b"\x00", b"c\x01"]),  # unknown or undocumented tags
]
_scalar = st.one_of(*_SCALARS)
_KEYS = ["x-delivery-count", "x-mcp-attempts", "x-mcp-retries", "x-mcp-retry-route",
         "x-schema-version", "traceparent", "tracestate", "x-death", "x-mcp-reason",
         "x-first-death-reason", "k"]
_key = st.one_of(st.sampled_from(_KEYS).map(str.encode), _text_bytes,
                 st.binary(min_size=120, max_size=255))


def _table_of(values: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.lists(st.tuples(_key, values), max_size=4).map(field_table)


def _array_of(values: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.lists(values, max_size=4).map(
        lambda items: struct.pack(">I", len(b"".join(items))) + b"".join(items))


_value = st.recursive(_scalar, lambda inner: st.one_of(
    _table_of(inner).map(lambda t: b"F" + t), _array_of(inner).map(lambda a: b"A" + a)),
    max_leaves=12)


@st.composite
def _deep(draw: st.DrawFn) -> bytes:
    """A table or array chain up to 700 deep around one scalar."""
    value = draw(_scalar)
    for _ in range(draw(st.integers(1, 700))):
        if draw(st.booleans()):
            value = b"F" + field_table([(b"n", value)])
        else:
            value = b"A" + struct.pack(">I", len(value)) + value
    return value


# A value that fills most of a frame: the router's own headers must still fit beside it.
_bulky = st.integers(100_000, 130_900).map(lambda n: b"S" + struct.pack(">I", n) + b"y" * n)
_headers = _table_of(st.one_of(_value, _deep(), _bulky))
_short = st.one_of(_text_bytes, st.binary(max_size=255)).map(lambda b: shortstr(b[:255]))
_PROPERTY = {
    "content_type": st.one_of(st.just(shortstr(b"application/json")), _short),
    "content_encoding": _short,
    "headers": _headers,
    "delivery_mode": st.sampled_from([b"\x01", b"\x02", b"\x00", b"\x07"]),
    "priority": st.integers(0, 255).map(lambda v: bytes([v])),
    "correlation_id": _short, "reply_to": _short, "message_id": _short,
    "timestamp": _packed(b"", ">Q", st.integers(0, 2**64 - 1)),
    "message_type": st.one_of(st.just(shortstr(b"OrderCreated")), _short),
    "app_id": _short, "cluster_id": _short,
}


@st.composite
def hostile_properties(draw: st.DrawFn) -> dict[str, bytes]:
    """Some properties, each as raw bytes; headers and the type most of the time."""
    return {name: draw(strategy) for name, strategy in _PROPERTY.items()
              if draw(st.integers(0, 9)) < (8 if name in ("headers", "message_type") else 3)}


