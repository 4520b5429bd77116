"""Content headers no publisher can make fatal: a tolerant decoder under aiormq's reader.

pamqp decodes every content header inside aiormq's connection reader, and an
exception there (``ValueError`` for a 2^63 timestamp or a key that is not
UTF-8, ``RecursionError`` for a table nested 600 deep, ``OverflowError``...)
ends the whole connection; after the reconnect the same message comes back
and does it again.  ``install`` replaces ``pamqp.frame._unmarshal_header_frame``
(the one function ``pamqp.frame.unmarshal`` calls for a header frame) with
``unmarshal_header``: the stock decoder first, unchanged and at its speed; only
when it raises, a recovery that decodes field by field, skips what does not
decode by its length on the wire, and always returns a ``ContentHeader`` with
the right body size, so the channel reads the body and delivers the message.
Its properties are ``Undecoded``: what could be recovered, what could not and
why, and the raw bytes of a header table that did not decode.  The router
then dead-letters the message as ``malformed`` (``router.broker.amqp.envelope_of``).

The same holds for the one method frame field a publisher chooses freely: a
routing key that is not UTF-8 makes pamqp refuse the ``basic.deliver`` (and
``basic.get-ok``, ``basic.return``) that carries it; ``unmarshal_method``
decodes it with replacement characters and notes ``wire_problems`` on the
method, which makes the delivery ``malformed`` too.

``install`` also mends one encoder: pamqp writes every Python float as a
32-bit ``f``, so a double header (``d``) the router passes on lost precision
(0.1 became 0.10000000149011612) or failed to encode at all (1e300,
``OverflowError``).  A float that does not survive 32 bits is written as ``d``.

What we offer upstream (pamqp and aiormq) is written up in
``docs/upstream-content-headers.md``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import pamqp.encode
import pamqp.frame
from pamqp import commands, decode, exceptions, header

__all__ = ["Undecoded", "encode_table_value", "install", "uninstall", "unmarshal_header",
           "unmarshal_method"]

_MAX_SHORTSTR = 255
# Bytes a field value takes after its type tag; None: a 4-byte length prefix follows.
_FIXED = {b"t": 1, b"b": 1, b"B": 1, b"s": 2, b"u": 2, b"I": 4, b"i": 4, b"f": 4,
          b"l": 8, b"L": 8, b"d": 8, b"T": 8, b"D": 5, b"V": 0, b"\x00": 0}
_PREFIXED = frozenset({b"S", b"x", b"A", b"F"})
_PROPERTY_SIZE = {"octet": 1, "short": 2, "long": 4, "longlong": 8, "timestamp": 8}


class Undecoded(commands.Basic.Properties):
    """Properties recovered from a header frame the stock decoder refused.

    ``problems`` says what was lost and why; ``raw_headers`` is the header
    table exactly as it was on the wire, when it did not decode whole.
    """

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.raw_headers: bytes | None = None


def _short(raw: bytes, limit: int = 60) -> str:
    text = repr(raw[:limit])
    return text + "..." if len(raw) > limit else text


def _shown(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"


def _value_size(data: bytes, tag: bytes) -> int | None:
    """Bytes the value after ``tag`` takes in ``data``, or None: unknown or truncated."""
    if tag in _FIXED:
        size = _FIXED[tag]
    elif tag in _PREFIXED and len(data) >= 4:
        size = 4 + int.from_bytes(data[:4], "big")
    else:
        return None
    return size if size <= len(data) else None


def _property_size(data: bytes, data_type: str) -> int | None:
    if data_type == "shortstr":
        size = 1 + data[0] if data else None
    elif data_type in ("longstr", "table"):
        size = 4 + int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    else:
        size = _PROPERTY_SIZE.get(data_type)
    return size if size is not None and size <= len(data) else None


def _table(raw: bytes, problems: list[str]) -> dict[str, Any]:
    """The entries of a field table that decode, one by one; the others in ``problems``."""
    entries: dict[str, Any] = {}
    end = min(len(raw), 4 + int.from_bytes(raw[:4], "big"))
    offset = 4
    while offset < end:
        key_raw = raw[offset + 1:offset + 1 + raw[offset]]
        offset += 1 + raw[offset]
        tag = raw[offset:offset + 1]
        size = _value_size(raw[offset + 1:end], tag)
        try:
            key = key_raw.decode("utf-8")
        except UnicodeDecodeError:
            key = None
            problems.append(f"header key {_short(key_raw)} is not UTF-8")
        if size is None:
            problems.append(f"header {key or _short(key_raw)!r}: field type {tag!r} is unknown "
                            "or truncated; the headers after it are lost")
            break
        value_raw = raw[offset:offset + 1 + size]
        offset += 1 + size
        if key is None:
            continue
        try:
            entries[key] = decode.embedded_value(value_raw)[1]
        except Exception as exc:  # noqa: BLE001 -- any decoding failure costs this header only
            problems.append(f"header {key!r} ({tag.decode('latin-1')}) does not decode: "
                            f"{_shown(exc)}")
    return entries


def _property(name: str, data_type: str, raw: bytes, properties: Undecoded) -> Any:
    """One property's value, recovered where it can be; the loss noted."""
    try:
        return decode.by_type(raw, data_type)[1]
    except Exception as exc:  # noqa: BLE001 -- recover below, or note what was lost
        if data_type == "table":
            properties.raw_headers = raw
            return _table(raw, properties.problems)
        if data_type == "shortstr":
            text = raw[1:].decode("utf-8", errors="replace")
            while len(text.encode("utf-8")) > _MAX_SHORTSTR:
                text = text[:-1]
            properties.problems.append(f"property {name} is not UTF-8: {_short(raw[1:])}")
            return text
        properties.problems.append(f"property {name} does not decode ({_short(raw)}): "
                                   f"{_shown(exc)}")
        return None


def _recover(frame_data: bytes) -> header.ContentHeader:
    """The header frame with what can be decoded of its properties (see the module doc)."""
    try:
        class_id, weight, body_size = struct.unpack(">HHQ", frame_data[0:12])
        offset, flags = header.ContentHeader._get_flags(frame_data[12:])
    except (struct.error, ValueError) as exc:
        raise exceptions.UnmarshalingException("ContentHeader", exc) from exc
    properties = Undecoded()
    data = frame_data[12 + offset:]
    for name in commands.Basic.Properties.__slots__:
        if not flags & commands.Basic.Properties.flags[name]:
            continue
        data_type = getattr(commands.Basic.Properties, "_" + name)
        size = _property_size(data, data_type)
        if size is None:
            properties.problems.append(f"property {name} is truncated; the properties "
                                       "after it are lost")
            break
        setattr(properties, name, _property(name, data_type, data[:size], properties))
        data = data[size:]
    frame = header.ContentHeader(weight, body_size, properties)
    frame.class_id = class_id
    return frame


def unmarshal_header(frame_data: bytes) -> header.ContentHeader:
    """``pamqp.frame._unmarshal_header_frame`` that raises only for a truncated frame."""
    content_header = header.ContentHeader()
    try:
        content_header.unmarshal(frame_data)
    except Exception:  # noqa: BLE001 -- whatever the publisher sent; recovered field by field
        return _recover(frame_data)
    return content_header


def _fits_float32(value: float) -> bool:
    try:
        return math.isnan(value) or struct.unpack(">f", struct.pack(">f", value))[0] == value
    except OverflowError:
        return False


def encode_table_value(value: Any) -> bytes:
    """``pamqp.encode.encode_table_value`` that writes a float as a double unless 32 bits
    hold it exactly."""
    if isinstance(value, float) and not _fits_float32(value):
        return b"d" + pamqp.encode.double(value)
    return _STOCK_ENCODE(value)


# The methods that carry a publisher's routing key, the one free-form field of a method.
_CARRIERS = frozenset({commands.Basic.Deliver.index, commands.Basic.GetOk.index,
                       commands.Basic.Return.index})


def _recover_method(frame_data: bytes) -> Any:
    """A content-carrying method whose short strings are decoded leniently, or None."""
    index = int.from_bytes(frame_data[0:4], "big")
    if index not in _CARRIERS:
        return None
    method = commands.INDEX_MAPPING[index]()
    data, offset, in_bits, problems = frame_data[4:], 0, False, []
    value: Any
    try:  # as pamqp.base.Frame.unmarshal, with a lenient shortstr
        for name in method.__slots__:
            data_type = method.amqp_type(name)
            if in_bits and (data_type != "bit" or offset == 8):
                data, offset, in_bits = data[1:], 0, False
            if data_type == "shortstr":
                raw = data[1:1 + data[0]]
                consumed, value = 1 + data[0], raw.decode("utf-8", errors="replace")
                if value.encode("utf-8") != raw:
                    problems.append(f"{name.replace('_', ' ')} {_short(raw)} is not UTF-8")
            else:
                consumed, value = decode.by_type(data, data_type, offset)
            if data_type == "bit":
                offset, in_bits, consumed = offset + 1, True, 0
            setattr(method, name, value)
            data = data[consumed:]
    except (IndexError, struct.error, ValueError):
        return None
    method.wire_problems = problems
    return method


def unmarshal_method(frame_data: bytes) -> Any:
    """``pamqp.frame._unmarshal_method_frame`` that survives a routing key not in UTF-8."""
    try:
        return _STOCK_METHOD(frame_data)
    except exceptions.UnmarshalingException:
        recovered = _recover_method(frame_data)
        if recovered is None:
            raise
        return recovered


_STOCK: Callable[[bytes], header.ContentHeader] = pamqp.frame._unmarshal_header_frame
_STOCK_METHOD: Callable[[bytes], Any] = pamqp.frame._unmarshal_method_frame
_STOCK_ENCODE: Callable[[Any], bytes] = pamqp.encode.encode_table_value


def install() -> None:
    """Decode content headers with ``unmarshal_header``, and encode floats faithfully, in
    this process (idempotent)."""
    pamqp.frame._unmarshal_header_frame = unmarshal_header
    pamqp.frame._unmarshal_method_frame = unmarshal_method
    pamqp.encode.encode_table_value = encode_table_value


def uninstall() -> None:
    """Put pamqp's own decoder and encoder back (for tests that show what they do)."""
    pamqp.frame._unmarshal_header_frame = _STOCK  # type: ignore[assignment]  # the same function, typed as a Callable
    pamqp.frame._unmarshal_method_frame = _STOCK_METHOD  # type: ignore[assignment]  # likewise
    pamqp.encode.encode_table_value = _STOCK_ENCODE  # type: ignore[assignment]  # likewise
