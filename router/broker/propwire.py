"""Message properties to wire bytes, fast, for the link's ``basic.publish``.

What ``pamqp``'s ``Basic.Properties.marshal`` writes, byte for byte (a unit
test compares them), in a tenth of the time: the router writes the properties
of every copy it publishes, and pamqp's per-field type dispatch was the
largest single cost of publishing.  Header values are encoded here when they
are strings, integers, booleans or tables; anything else goes to
``router.broker.wire.encode_table_value`` (pamqp's encoder, floats mended).
Whatever cannot be encoded raises pamqp's or ``struct``'s own errors, which the
channel reports as ``Unsendable``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import pamqp.encode

from router.broker import wire
from router.broker.encodable import wire_value
from router.core.envelope import Properties

__all__ = ["encode_properties", "encode_table", "short_string"]

_LONG = struct.Struct(">I")
_FLAGS = struct.Struct(">H")
_BYTE = struct.Struct(">b")
_MAX_KEY = 128  # bytes: pamqp truncates longer field names (screen() refuses them first)


def short_string(text: str) -> bytes:
    """An AMQP short string; ``ValueError`` when it is longer than 255 bytes."""
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"{text[:40]!r}...: longer than 255 bytes")
    return bytes((len(raw),)) + raw


def _value(value: Any) -> bytes:
    kind = type(value)
    if kind is str:
        raw: bytes = value.encode()
        return b"S" + _LONG.pack(len(raw)) + raw
    if kind is int:
        return b"b" + _BYTE.pack(value) if -128 <= value <= 127 else \
            pamqp.encode.table_integer(value)
    if kind is bool:
        return b"t\x01" if value else b"t\x00"
    if kind is dict:  # keys as pamqp gets them: strings (wire_value)
        return b"F" + encode_table(wire_value(value))
    return wire.encode_table_value(wire_value(value))


def encode_table(table: Mapping[str, Any]) -> bytes:
    """An AMQP field table, keys in sorted order as pamqp writes them."""
    if not table:
        return b"\x00\x00\x00\x00"
    parts = []
    for key, item in sorted(table.items()):
        raw = key.encode()
        if len(raw) > _MAX_KEY:
            return pamqp.encode.field_table(wire_value(dict(table)))  # pamqp's truncation
        parts.append(bytes((len(raw),)) + raw)
        parts.append(_value(item))
    body = b"".join(parts)
    return _LONG.pack(len(body)) + body


def encode_properties(p: Properties) -> bytes:
    """The property flags and fields of a content header, for ``p``."""
    flags, parts = 0, []
    for bit, text in ((15, p.content_type), (14, p.content_encoding)):
        if text:
            flags |= 1 << bit
            parts.append(short_string(text))
    flags |= 1 << 13  # the headers table is always written, empty or not (pamqp does)
    parts.append(encode_table(p.headers))
    if p.delivery_mode not in (None, 1, 2):
        raise ValueError(f"delivery_mode must be 1 or 2, not {p.delivery_mode!r}")  # as pamqp
    for bit, octet in ((12, p.delivery_mode), (11, p.priority)):
        if octet is not None:
            flags |= 1 << bit
            parts.append(pamqp.encode.octet(octet))
    for bit, text in ((10, p.correlation_id), (9, p.reply_to), (8, p.expiration),
                      (7, p.message_id)):
        if text:
            flags |= 1 << bit
            parts.append(short_string(text))
    if p.timestamp is not None:
        flags |= 1 << 6
        parts.append(pamqp.encode.timestamp(p.timestamp))
    for bit, text in ((5, p.type), (4, p.user_id), (3, p.app_id)):
        if text:
            flags |= 1 << bit
            parts.append(short_string(text))
    return _FLAGS.pack(flags) + b"".join(parts)
