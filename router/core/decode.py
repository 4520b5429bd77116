"""Stage 1: bytes and properties to a ``Decoded`` message, or a ``malformed`` dead letter.

Pure and total: whatever arrives (not JSON, invalid UTF-8, lone surrogates,
5,000-deep nesting, headers of the wrong type), the result is a value, never
an exception.  orjson refuses invalid UTF-8 and lone surrogates and stops at a
depth of 1024, so a hostile body cannot reach Python's recursion limit.

A body has one reading.  Integers of any size are read exactly: orjson turns
an integer outside [-2**63, 2**64) into a float (and one past 1e308 into an
error), so a body with such a float and a run of 19 or more digits is read again by
Python's ``json``, whose integers are exact.  An object with the same key
twice is refused: the router would validate one value while a consumer whose
parser keeps the first could read the other.  Finding one is cheap: each
member of an object has one ``:`` outside strings and orjson writes ``:``
inside strings as is, so when orjson's compact re-encoding of what it read has
as many ``:`` as the body, nothing was dropped (a body with a ``\\u003.``
escape, which may be a colon, is read exactly instead).  ``bench/decode.py``
measures the cost.  The exact reading nests as deep as Python's recursion
limit allows (about 1,000 levels, as orjson's 1,024); deeper is malformed.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from router.core.envelope import Envelope
from router.core.outcome import DeadLetter, Decoded, Reason

__all__ = ["SCHEMA_VERSION_HEADER", "decode", "encode_body", "message_type_of", "parse_body",
           "schema_version_of"]

SCHEMA_VERSION_HEADER = "x-schema-version"
_IDENTITY_ENCODINGS = {"", "identity", "utf-8", "utf8"}
# Every integer orjson cannot hold exactly (outside [-2**63, 2**64)) has 19 digits or more:
# a body with no run of 19 digits (digits made "0", all else " ") has none.
_DIGITS = bytes(ord("0") if chr(b).isdigit() and b < 128 else ord(" ") for b in range(256))
_LONG_DIGITS = b"0" * 19
_WIDE = 2.0**63  # orjson reads an integer outside [-2**63, 2**64) as a float this large


class _Duplicate(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return found


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of the range of a double")
    return value


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _surrogate(value: Any) -> bool:
    """Whether a string anywhere in ``value`` holds a lone surrogate (Python's json allows)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _exact(body: bytes) -> Any:
    """``body`` read by Python's json: exact integers, duplicate keys refused (ValueError)."""
    try:
        value = json.loads(body.decode("utf-8"), object_pairs_hook=_unique,
                           parse_float=_finite, parse_constant=_refuse_constant)
    except _Duplicate as exc:
        raise ValueError(f"body has the key {exc.key!r:.80} twice in one object: a reader "
                         "could see a value that was not validated") from None
    except RecursionError:
        raise ValueError("body is not valid JSON: nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
    except ValueError as exc:  # an integer of more than 4,300 digits, 1e400, NaN
        raise ValueError(f"body is not valid JSON: {str(exc)[:120]}") from None
    if _surrogate(value):
        raise ValueError("body is not valid JSON: a string holds a lone surrogate")
    return value


def _wide_float(value: Any) -> bool:
    """Whether a float in ``value`` is as large as orjson makes an integer it cannot hold."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not -_WIDE < item < _WIDE:
            return True
    return False


def parse_body(body: bytes) -> Any:
    """The one reading of a JSON body; ValueError saying why it has none."""
    long_digits = _LONG_DIGITS in body.translate(_DIGITS)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if long_digits and "infinity" in str(exc):  # an integer past 1e308: read exactly
            return _exact(body)
        raise ValueError(f"body is not valid JSON: {exc}") from None
    colons = body.count(b":")
    if colons and (b"\\u003" in body or orjson.dumps(value).count(b":") != colons):
        return _exact(body)  # maybe a duplicate key: the exact reading names it
    if long_digits and _wide_float(value):
        return _exact(body)
    return value


def encode_body(value: Any) -> bytes:
    """``value`` as compact JSON; integers of any size written exactly."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode("utf-8")


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
        body = parse_body(envelope.body)
    except ValueError as exc:
        return DeadLetter(Reason.MALFORMED, str(exc), message_type)
    if message_type is None:
        return DeadLetter(Reason.UNKNOWN_TYPE, "no type property and no routing key", None)
    return Decoded(message_type, version, body)
