"""What of a delivery's properties the router can send on again (the broker shell).

pamqp decodes more than it can encode: a table nested 400 deep decodes but may
hit the recursion limit when encoded deeper in the stack; a ``delivery_mode``
other than 1 or 2 makes ``Basic.Properties`` raise; a key longer than 128
bytes would be truncated; a Python value of no AMQP type, or out of its range
(an int past 64 bits, a decimal of scale 300), cannot be written at all; and
properties that filled the publisher's frame leave no room for the router's
own headers, and a content header over ``frame_max`` makes RabbitMQ close the
router's publishing connection (``FRAME_ERROR``).  (A
double of 1e300, which pamqp writes as a 32-bit float, is mended by
``router.broker.wire.install`` instead: it is sent on as a double.)  ``screen`` finds these before
the message reaches the pipeline: a delivery that cannot be sent on is a
permanent problem of that message (``malformed``), never a publish to retry.
Its healthy part is kept for the dead letter, which must itself be sendable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pamqp.encode
from pamqp import commands, encode, header

from router.core.envelope import Properties

__all__ = ["MAX_HEADER_DEPTH", "MAX_PROPERTIES_BYTES", "fit_raw", "screen", "wire_properties",
           "wire_value"]

MAX_HEADER_DEPTH = 64  # nested tables/arrays in one header; deeper is malformed
_MAX_KEY_BYTES = 128  # AMQP 0-9-1 field names; pamqp truncates longer ones silently
FRAME_MAX = 131072  # RabbitMQ's and aiormq's default frame_max
# Room for what the router adds: x-mcp-error (2,000 characters), retry state, trace context.
_ROOM = 16384
# The encoded properties a delivery may have: frame_max less the frame's own 8 + 12 bytes.
MAX_PROPERTIES_BYTES = FRAME_MAX - 8 - 12 - _ROOM
_STOCK_ENCODE = pamqp.encode.encode_table_value  # before router.broker.wire mends it


def wire_value(value: Any) -> Any:
    """A header value pamqp can encode again.

    pamqp decodes a long string that is not UTF-8 as ``bytes`` but cannot encode
    ``bytes``; as a ``bytearray`` it travels as an AMQP byte array, unchanged.
    """
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, dict):
        return {str(k): wire_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [wire_value(v) for v in value]
    return value


def wire_properties(p: Properties) -> commands.Basic.Properties:
    """The AMQP properties frame for ``p``."""
    return commands.Basic.Properties(
        content_type=p.content_type,
        content_encoding=p.content_encoding,
        headers={k: wire_value(v) for k, v in p.headers.items()},
        delivery_mode=p.delivery_mode,
        priority=p.priority,
        correlation_id=p.correlation_id,
        reply_to=p.reply_to,
        expiration=p.expiration,
        message_id=p.message_id,
        timestamp=p.timestamp,
        message_type=p.type,
        user_id=p.user_id,
        app_id=p.app_id,
    )


def _long_key(key: Any) -> bool:
    return not isinstance(key, str) or len(key.encode("utf-8", "replace")) > _MAX_KEY_BYTES


def _shape(value: Any) -> str | None:
    """What makes a nested value unsendable in its shape: too deep, or a key too long.

    Walked with a stack, not recursion, and no deeper than ``MAX_HEADER_DEPTH`` + 1.
    """
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if level > MAX_HEADER_DEPTH:
            return f"is nested more than {MAX_HEADER_DEPTH} deep"
        if isinstance(item, dict):
            if any(_long_key(k) for k in item):
                return f"has a key longer than {_MAX_KEY_BYTES} bytes"
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, level + 1) for v in item)
    return None


_INT64 = range(-(2**63), 2**63)
_BINARY = (bytes, bytearray)
_CONTAINERS = (dict, list, tuple)
_SHORTSTRS = ("content_type", "content_encoding", "correlation_id", "reply_to", "expiration",
              "message_id", "type", "user_id", "app_id")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _leaf_bytes(value: Any) -> int | None:
    """At most how many bytes a scalar takes encoded, or None when it may not encode."""
    if isinstance(value, str):
        return 5 + 4 * len(value) if value.isascii() or _utf8(value) else None
    if value is None or isinstance(value, bool):
        return 2
    if isinstance(value, int):
        return 9 if value in _INT64 else None
    if isinstance(value, float):  # a double that 32 bits cannot hold needs router.broker.wire
        return 9 if pamqp.encode.encode_table_value is not _STOCK_ENCODE else None
    if isinstance(value, _BINARY):
        return 5 + len(value)
    return None  # decimals, timestamps and the rest: the exact path decides


def _plain_properties(p: Properties) -> bool:
    if p.delivery_mode not in (None, 1, 2):
        return False
    if p.priority is not None and not (isinstance(p.priority, int) and 0 <= p.priority < 256):
        return False
    if p.timestamp is not None and p.timestamp.timestamp() < 0:  # written unsigned
        return False
    return all(t is None or (isinstance(t, str) and len(t) <= 63 and (t.isascii() or _utf8(t)))
               for t in (getattr(p, name) for name in _SHORTSTRS))


def _plain_headers(headers: Mapping[str, Any]) -> bool:
    budget = MAX_PROPERTIES_BYTES - 9 * 256  # the short strings and the rest, at most
    stack: list[tuple[Any, int]] = [(headers, 0)]
    while stack and budget >= 0:
        item, level = stack.pop()
        if isinstance(item, _CONTAINERS):
            if level > MAX_HEADER_DEPTH:
                return False
            if isinstance(item, dict):
                if not all(isinstance(k, str) and len(k) <= _MAX_KEY_BYTES // 4 for k in item):
                    return False
                budget -= sum(2 + 4 * len(k) for k in item)
                stack.extend((v, level + 1) for v in item.values())
            else:
                budget -= 5
                stack.extend((v, level + 1) for v in item)
            continue
        size = _leaf_bytes(item)
        if size is None:
            return False
        budget -= size
    return budget >= 0


def _surely_sendable(p: Properties) -> bool:
    """A quick, conservative look: True only when ``p`` surely encodes and fits a frame."""
    return _plain_properties(p) and _plain_headers(p.headers)


def _size(p: Properties) -> int | None:
    """Bytes of ``p`` on the wire, or None when it does not encode."""
    try:
        return len(header.ContentHeader(0, 0, wire_properties(p)).marshal()) - 12
    except Exception:  # noqa: BLE001 -- any encoding failure: the slow path says which
        return None


def _sendable(p: Properties) -> bool:
    if _surely_sendable(p):
        return True
    if any(_long_key(k) or _shape(v) for k, v in p.headers.items()):
        return False
    size = _size(p)
    return size is not None and size <= MAX_PROPERTIES_BYTES


def _within_frame(p: Properties, problems: list[str]) -> Properties:
    """``p`` with its largest headers left out until it leaves the router room in a frame."""
    size = _size(p)
    if size is None or size <= MAX_PROPERTIES_BYTES:
        return p
    headers = dict(p.headers)
    largest = sorted(headers, key=lambda k: len(encode.encode_table_value(
        wire_value(headers[k]))), reverse=True)
    for key in largest:
        del headers[key]
        problems.append(f"header {key!r:.80} left out: the properties take {size:,} bytes, "
                        f"more than the {MAX_PROPERTIES_BYTES:,} the router can send on in one "
                        "frame")
        size = _size(replace(p, headers=headers))
        if size is not None and size <= MAX_PROPERTIES_BYTES:
            break
    return replace(p, headers=headers)


def _header_problem(key: Any, value: Any) -> str | None:
    if _long_key(key):
        return f"header key {key!r:.80} is longer than {_MAX_KEY_BYTES} bytes"
    shape = _shape(value)
    if shape is not None:
        return f"header {key!r} {shape}"
    try:
        encode.encode_table_value(wire_value(value))
    except Exception as exc:  # noqa: BLE001 -- whatever pamqp refuses to encode
        return f"header {key!r} cannot be sent on ({type(exc).__name__}: {str(exc)[:120]}): " \
               f"{value!r:.80}"
    return None


_CHECKED = {"content_type": "shortstr", "content_encoding": "shortstr",
            "delivery_mode": "octet", "priority": "octet", "correlation_id": "shortstr",
            "reply_to": "shortstr", "expiration": "shortstr", "message_id": "shortstr",
            "timestamp": "timestamp", "type": "shortstr", "app_id": "shortstr",
            "user_id": "shortstr"}


def _property_problem(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if name == "delivery_mode" and value not in (1, 2):
        return f"property delivery_mode is {value!r}, not 1 or 2"
    try:
        encode.by_type(value, _CHECKED[name])
    except Exception as exc:  # noqa: BLE001 -- whatever pamqp refuses to encode
        return f"property {name} cannot be sent on ({type(exc).__name__}): {value!r:.80}"
    return None


def screen(p: Properties) -> tuple[Properties, list[str]]:
    """``p`` unchanged when the router can send it on, else its sendable part and why not.

    One trial encoding on the fast path; only a delivery that fails it is
    taken apart header by header and property by property.
    """
    if _sendable(p):
        return p, []
    problems: list[str] = []
    headers: dict[str, Any] = {}
    for key, value in p.headers.items():
        problem = _header_problem(key, value)
        if problem is None:
            headers[key] = value
        else:
            problems.append(problem)
    changes: dict[str, Any] = {}
    for name in _CHECKED:
        problem = _property_problem(name, getattr(p, name))
        if problem is not None:
            problems.append(problem)
            changes[name] = None
    kept = _within_frame(replace(p, headers=headers, **changes), problems)
    if not _sendable(kept):  # nothing above explains it: send only what surely encodes
        problems.append("properties cannot be sent on")
        kept = Properties(message_id=p.message_id if "message_id" not in changes else None)
    return kept, problems or ["properties cannot be sent on"]


def fit_raw(p: Properties, raw: bytes | None) -> tuple[Properties, bytes | None, list[str]]:
    """Room in the dead letter's frame for ``raw`` (a header table that did not decode):
    the headers recovered from it go first, then, if it alone is too large, ``raw``."""
    if raw is None:
        return p, None, []
    room = MAX_PROPERTIES_BYTES - 64  # the x-mcp-raw-headers entry's own key and length
    size = _size(p) or 0
    if size + len(raw) <= room:
        return p, raw, []
    problems = [f"the headers recovered are left out: with the raw table ({len(raw):,} bytes) "
                f"they take more than the {MAX_PROPERTIES_BYTES:,} the router can send on in "
                "one frame"]
    p = replace(p, headers={})
    if (_size(p) or 0) + len(raw) > room:
        problems.append(f"the raw header table ({len(raw):,} bytes) is left out too")
        raw = None
    return p, raw, problems
