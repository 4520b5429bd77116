"""Content headers from wire bytes, fast, for the link's deliveries: the mirror of ``propwire``.

``content_header`` gives what ``router.broker.wire.unmarshal_header`` gives
(pamqp's ``ContentHeader.unmarshal``) for an ordinary ``basic`` content header,
the same objects of the same types (a unit test compares them), in a fraction
of the time: pamqp's per-field type dispatch and slicing was the largest single
cost of reading a delivery's header.  Field-table values are typed as pamqp
types them: a long string is ``str``, or ``bytes`` when it is not UTF-8; ``i``
unsigned and ``I`` signed, ``L`` signed like ``l``; ``x`` a ``bytearray``;
``V`` ``None``; a timestamp above 2^32 read as milliseconds.

It is a fast path only.  Whatever it is not sure of, it declines (``None``)
and the caller uses the tolerant decoder: a second flag word, the reserved
flag bit, a class other than ``basic``, a nonzero weight, a string or table
that runs past its end (pamqp would read a shortened one), a key or short
string not in UTF-8, an unknown field type, a table nested deeper than
``MAX_DEPTH``, a delivery mode or cluster id pamqp's properties refuse, a
timestamp ``datetime`` cannot hold, bytes after the last property.  So a
hostile header costs its message exactly as it did before.
"""

from __future__ import annotations

import datetime
import struct
from decimal import Decimal
from typing import Any

from pamqp import commands, header

__all__ = ["MAX_DEPTH", "content_header"]

MAX_DEPTH = 32  # tables and arrays inside one another; deeper ones go to the tolerant decoder

_HEAD = struct.Struct(">HHQH")  # class id, weight, body size, the first flag word
_HEAD_SIZE = _HEAD.size
_LENGTH = struct.Struct(">I")
_STAMP = struct.Struct(">Q")
_DECIMAL = struct.Struct(">Bi")
_TEN = Decimal(10)
_UTC = datetime.UTC
_FROM_STAMP = datetime.datetime.fromtimestamp
_Properties = commands.Basic.Properties

# The fixed-size field values: tag -> (its struct, its size), as pamqp.decode reads them.
_FIXED: dict[int, tuple[struct.Struct, int]] = {
    ord(tag): (struct.Struct(fmt), struct.calcsize(fmt))
    for tag, fmt in (("b", ">b"), ("B", ">B"), ("s", ">h"), ("u", ">H"), ("I", ">l"),
                     ("i", ">L"), ("l", ">q"), ("L", ">q"), ("f", ">f"), ("d", ">d"))}
_S, _T, _F, _A, _D, _X, _V, _BOOL = (ord(c) for c in "STFADxVt")

# The properties in wire order: (flag bit, keyword of Basic.Properties, AMQP type).
_LAYOUT = tuple((_Properties.flags[name], name, _Properties.amqp_type(name))
                for name in _Properties.__slots__)
_RESERVED_BITS = 0b11  # bit 0: another flag word follows; bit 1: no property
_SHORTSTR, _TABLE, _OCTET = "shortstr", "table", "octet"
_PLANS: dict[int, tuple[tuple[str, str], ...]] = {}  # at most 2^14: one per flag word


class _Decline(Exception):
    """Not an ordinary header: the tolerant decoder reads it."""


# What reading a header this module does not expect raises; each means "decline".
_DECLINED = (_Decline, IndexError, struct.error, ValueError, ArithmeticError, OSError,
             RecursionError)


def content_header(payload: bytes) -> header.ContentHeader | None:
    """The content header ``payload`` holds, as pamqp decodes it, or None: not sure, ask
    ``router.broker.wire``."""
    if type(payload) is not bytes or len(payload) < _HEAD_SIZE:
        return None
    class_id, weight, body_size, flags = _HEAD.unpack_from(payload)
    if class_id != _Properties.frame_id or weight or flags & _RESERVED_BITS:
        return None
    try:
        properties = _properties(payload, flags)
    except _DECLINED:
        return None
    frame = header.ContentHeader(weight, body_size, properties)
    frame.class_id = class_id
    return frame


def _properties(data: bytes, flags: int) -> commands.Basic.Properties:
    fields: dict[str, Any] = {}
    at = _HEAD_SIZE
    for name, kind in _PLANS.get(flags) or _plan(flags):
        if kind == _SHORTSTR:
            end = at + 1 + data[at]
            if end > len(data):
                raise _Decline
            fields[name] = data[at + 1:end].decode()
            at = end
        elif kind == _TABLE:
            at, fields[name] = _table(data, at, 0)
        elif kind == _OCTET:
            fields[name] = data[at]
            at += 1
        else:  # the timestamp
            fields[name] = _timestamp(_STAMP.unpack_from(data, at)[0])
            at += 8
    if at != len(data):
        raise _Decline
    return _Properties(**fields)  # ValueError (a delivery mode but 1 or 2...): declined


def _plan(flags: int) -> tuple[tuple[str, str], ...]:
    """The properties ``flags`` says are present, in wire order (kept: publishers reuse few)."""
    plan = tuple((name, kind) for bit, name, kind in _LAYOUT if flags & bit)
    _PLANS[flags] = plan
    return plan


def _timestamp(value: float) -> datetime.datetime:
    if value > 0xFFFFFFFF:  # as pamqp: anything above the year 2106 is milliseconds
        value /= 1000.0
    return _FROM_STAMP(value, tz=_UTC)


def _table(data: bytes, at: int, depth: int) -> tuple[int, dict[str, Any]]:
    """The field table at ``at``, and where it ends."""
    end = at + 4 + _LENGTH.unpack_from(data, at)[0]
    if end > len(data) or depth > MAX_DEPTH:
        raise _Decline
    at += 4
    table: dict[str, Any] = {}
    while at < end:
        key_end = at + 1 + data[at]
        if key_end >= end:
            raise _Decline
        key = data[at + 1:key_end].decode()
        at, table[key] = _value(data, key_end, depth)
        if at > end:
            raise _Decline
    return at, table


def _array(data: bytes, at: int, depth: int) -> tuple[int, list[Any]]:
    end = at + 4 + _LENGTH.unpack_from(data, at)[0]
    if end > len(data) or depth > MAX_DEPTH:
        raise _Decline
    at += 4
    items = []
    while at < end:
        at, item = _value(data, at, depth)
        if at > end:
            raise _Decline
        items.append(item)
    return at, items


def _value(data: bytes, at: int, depth: int) -> tuple[int, Any]:
    """The tagged field value at ``at``, and where it ends (perhaps past ``data``)."""
    tag = data[at]
    at += 1
    if tag == _S:
        end = at + 4 + _LENGTH.unpack_from(data, at)[0]
        raw = data[at + 4:end]
        try:
            return end, raw.decode()
        except UnicodeDecodeError:
            return end, raw  # pamqp's bytes for a long string not in UTF-8
    fixed = _FIXED.get(tag)
    if fixed is not None:
        return at + fixed[1], fixed[0].unpack_from(data, at)[0]
    if tag == _BOOL:
        return at + 1, bool(data[at])
    if tag == _F:
        return _table(data, at, depth + 1)
    if tag == _A:
        return _array(data, at, depth + 1)
    if tag == _T:
        return at + 8, _timestamp(_STAMP.unpack_from(data, at)[0])
    if tag == _D:
        places, raw_value = _DECIMAL.unpack_from(data, at)
        return at + 5, Decimal(raw_value) * (_TEN ** -places)  # pamqp's very arithmetic
    if tag == _X:
        end = at + 4 + _LENGTH.unpack_from(data, at)[0]
        return end, bytearray(data[at + 4:end])
    if tag in (_V, 0):  # pamqp reads an undocumented 0 tag as void too
        return at, None
    raise _Decline  # an unknown type: pamqp raises, the tolerant decoder skips it
