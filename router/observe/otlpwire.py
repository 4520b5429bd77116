"""OTLP trace requests encoded straight from span records, in protobuf's wire format.

The SDK's encoder builds a protobuf object per span, attribute and value
before serialising them: about 150 µs a span here, which at 100 % sampling is
more than a core.  This module writes the same bytes directly from the
``SpanRecord`` tuples (``router.observe.spanrecord``): an ``ExportTraceServiceRequest``
of one resource and one instrumentation scope, as the SDK's
``encode_spans(...).SerializeToString()`` gives for the same spans, which the
tests check field by field.  Pure: no I/O.

Field numbers are those of ``opentelemetry/proto/trace/v1/trace.proto`` and
``common/v1/common.proto``; the SDK's default limits apply (128 attributes,
events, links; the newest are kept and the rest counted as dropped, as the SDK does).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from router.observe.spanrecord import SpanRecord

__all__ = ["LIMIT", "encode_prefix", "encode_request"]

LIMIT = 128
HAS_IS_REMOTE, IS_REMOTE = 0x100, 0x200  # SpanFlags
_FIXED32, _FIXED64, _DOUBLE = struct.Struct("<I"), struct.Struct("<Q"), struct.Struct("<d")


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _text(number: int, text: str) -> bytes:
    return _field(number, text.encode("utf-8", "surrogatepass")) if text else b""


def _any(value: Any) -> bytes:
    """An ``AnyValue``."""
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _field(1, value.encode("utf-8", "surrogatepass"))
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64, two's complement
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _field(7, value)
    if isinstance(value, Sequence):
        return _field(5, b"".join(_field(1, _any(v)) for v in value))  # ArrayValue.values
    raise TypeError(f"not an OTLP attribute value: {type(value).__name__}")


# Encoded ``KeyValue``s of (number, key, type, value): most attributes repeat from one
# message to the next (system, operation, destination), so most are encoded once.
_SEEN: dict[tuple[int, str, type, Any], bytes] = {}
_SEEN_MAX = 8192
_CACHED = (str, int, float, bool)


def _attributes(number: int, attributes: Mapping[str, Any]) -> tuple[bytes, int]:
    """Repeated ``KeyValue`` as field ``number``, and how many were over the limit."""
    parts = []
    seen = _SEEN
    for key, value in list(attributes.items())[-LIMIT:] if len(attributes) > LIMIT \
            else attributes.items():
        kind = type(value)
        cacheable = kind in _CACHED
        if cacheable and (done := seen.get((number, key, kind, value))) is not None:
            parts.append(done)
            continue
        encoded = _field(number, _text(1, key) + _field(2, _any(value)))
        if cacheable:
            if len(seen) >= _SEEN_MAX:
                seen.clear()
            seen[(number, key, kind, value)] = encoded
        parts.append(encoded)
    return b"".join(parts), max(len(attributes) - LIMIT, 0)


def _uint(number: int, value: int) -> bytes:
    """A varint field (wire type 0), left out when zero as proto3 does."""
    return _varint(number << 3) + _varint(value) if value else b""


def _trace_state(state: Sequence[tuple[str, str]]) -> str:
    return ",".join(f"{k}={v}" for k, v in state)


def _span(record: SpanRecord) -> bytes:
    (name, trace_id, span_id, _flags, state, parent_id, parent_remote, kind, start, end,
     attributes, events, links, status_code, status_description) = record
    attrs, dropped = _attributes(9, attributes)
    parts = [_field(1, trace_id.to_bytes(16, "big")), _field(2, span_id.to_bytes(8, "big")),
             _text(3, _trace_state(state)),
             _field(4, parent_id.to_bytes(8, "big")) if parent_id else b"",
             _text(5, name), b"\x30" + _varint(kind + 1),
             b"\x39" + _FIXED64.pack(start), b"\x41" + _FIXED64.pack(end),
             attrs, _uint(10, dropped)]
    for event_name, timestamp, event_attributes in events[-LIMIT:]:
        event_attrs, event_dropped = _attributes(3, event_attributes)
        parts.append(_field(11, b"\x09" + _FIXED64.pack(timestamp) + _text(2, event_name)
                            + event_attrs + _uint(4, event_dropped)))
    parts.append(_uint(12, max(len(events) - LIMIT, 0)))
    for link_trace, link_span, _link_flags, link_attributes in links[-LIMIT:]:
        link_attrs, link_dropped = _attributes(4, link_attributes)
        parts.append(_field(13, _field(1, link_trace.to_bytes(16, "big"))
                            + _field(2, link_span.to_bytes(8, "big")) + link_attrs
                            + _uint(5, link_dropped)
                            + b"\x35" + _FIXED32.pack(HAS_IS_REMOTE | IS_REMOTE)))
    parts.append(_uint(14, max(len(links) - LIMIT, 0)))
    status = (_text(2, status_description or "") + _uint(3, status_code))
    parts.append(_field(15, status))
    # As the SDK encodes it: whether the parent is remote, not the trace flags.
    parts.append(b"\x85\x01" + _FIXED32.pack(HAS_IS_REMOTE | (IS_REMOTE if parent_remote else 0)))
    return b"".join(parts)


def encode_request(prefix: tuple[bytes, bytes], records: Iterable[SpanRecord]) -> bytes:
    """One ``ExportTraceServiceRequest`` of ``records`` under the ``prefix`` of
    ``(encoded Resource field, encoded InstrumentationScope field)``."""
    resource, scope = prefix
    spans = b"".join(_field(2, _span(r)) for r in records)
    return _field(1, resource + _field(2, scope + spans))


def encode_prefix(attributes: Mapping[str, Any], scope: str, version: str
                  ) -> tuple[bytes, bytes]:
    """The ``Resource`` and ``InstrumentationScope`` fields, encoded once per process."""
    resource, _ = _attributes(1, attributes)
    return _field(1, resource), _field(1, _text(1, scope) + _text(2, version))
