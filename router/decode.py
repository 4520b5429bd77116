"""Stage 1: bytes and properties to a ``Decoded`` message, or a ``malformed`` dead letter.

Pure and total: whatever arrives (not JSON, invalid UTF-8, lone surrogates,
5,000-deep nesting, headers of the wrong type), the result is a value, never
an exception.  orjson refuses invalid UTF-8 and lone surrogates and stops at a
depth of 1024, so a hostile body cannot reach Python's recursion limit.
"""

from __future__ import annotations

from typing import Any

import orjson

from router.envelope import Envelope
from router.outcome import DeadLetter, Decoded, Reason

__all__ = ["SCHEMA_VERSION_HEADER", "decode", "message_type_of", "schema_version_of"]

SCHEMA_VERSION_HEADER = "x-schema-version"
_IDENTITY_ENCODINGS = {"", "identity", "utf-8", "utf8"}


def message_type_of(envelope: Envelope) -> str | None:
    """The ``type`` property, else the routing key, else None."""
    return envelope.properties.type or envelope.routing_key or None


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or (
        media.startswith("application/") and media.endswith("+json"))


def schema_version_of(headers: Any) -> int | str | None:
    """The ``x-schema-version`` header as an int, None when absent, or an error text."""
    raw = headers.get(SCHEMA_VERSION_HEADER) if isinstance(headers, dict) else None
    if raw is None:
        return None
    if isinstance(raw, bytes | bytearray):
        try:
            raw = bytes(raw).decode("ascii")
        except UnicodeDecodeError:
            return f"{SCHEMA_VERSION_HEADER} must be an integer, got bytes"
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit() \
            and len(raw.strip()) <= 9:
        raw = int(raw.strip())
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1:
        return raw
    return f"{SCHEMA_VERSION_HEADER} must be a positive integer, got {raw!r:.60}"


def decode(envelope: Envelope) -> Decoded | DeadLetter:
    """Parse the body as JSON and read the type and schema version."""
    props = envelope.properties
    message_type = message_type_of(envelope)
    if not _is_json(props.content_type):
        return DeadLetter(Reason.MALFORMED, f"content type {props.content_type!r} is not JSON",
                          message_type)
    encoding = (props.content_encoding or "").strip().lower()
    if encoding not in _IDENTITY_ENCODINGS:
        return DeadLetter(Reason.MALFORMED, f"content encoding {props.content_encoding!r} "
                                            "is not supported", message_type)
    version = schema_version_of(props.headers)
    if isinstance(version, str):
        return DeadLetter(Reason.MALFORMED, version, message_type)
    try:
        body = orjson.loads(envelope.body)
    except orjson.JSONDecodeError as exc:
        return DeadLetter(Reason.MALFORMED, f"body is not valid JSON: {exc}", message_type)
    if message_type is None:
        return DeadLetter(Reason.UNKNOWN_TYPE, "no type property and no routing key", None)
    return Decoded(message_type, version, body)
