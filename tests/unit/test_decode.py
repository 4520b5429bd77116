"""Stage 1: bytes and properties to a ``Decoded`` message or a dead letter."""

from __future__ import annotations

import json
from typing import Any

import pytest

from router.core.decode import decode, encode_body
from router.core.outcome import DeadLetter, Decoded, Reason
from tests.unit.conftest import make_envelope


def test_json_body_decodes() -> None:
    """A JSON body with a type property becomes a ``Decoded`` with that body."""
    env = make_envelope({"a": [1, 2]}, type="OrderCreated")

    result = decode(env)

    assert result == Decoded("OrderCreated", None, {"a": [1, 2]})


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "application/vnd.x+json",
     "Application/JSON"],
)
def test_json_content_types_are_accepted(content_type: str | None) -> None:
    """Absent, application/json (with parameters) and +json media types are read as JSON."""
    env = make_envelope({}, type="T", content_type=content_type)

    result = decode(env)

    assert isinstance(result, Decoded)


def test_non_json_content_type_is_malformed() -> None:
    """A text/plain message is dead-lettered as malformed, naming the content type."""
    env = make_envelope({}, type="T", content_type="text/plain")

    result = decode(env)

    assert isinstance(result, DeadLetter)
    assert result.reason is Reason.MALFORMED
    assert "text/plain" in result.error
    assert result.message_type == "T"


def test_gzip_content_encoding_is_refused() -> None:
    """A compressed body is malformed: the router does not decompress."""
    env = make_envelope({}, type="T", content_encoding="gzip")

    result = decode(env)

    assert isinstance(result, DeadLetter)
    assert result.reason is Reason.MALFORMED
    assert "gzip" in result.error


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not json", "not JSON"),
        (b"", "empty"),
        (b"\xff\xfe", "invalid UTF-8"),
        (b'{"a": "\\ud800"}', "lone surrogate escape"),
        (b"[" * 5000 + b"]" * 5000, "5,000-deep nesting"),
        (b"{'a': 1}", "single quotes"),
        (b"NaN", "NaN is not JSON"),
    ],
)
def test_unparseable_body_is_malformed_without_raising(body: bytes, why: str) -> None:
    """A body that is not strict JSON becomes a malformed dead letter, never an exception."""
    env = make_envelope(body, type="T")

    result = decode(env)

    assert isinstance(result, DeadLetter), why
    assert result.reason is Reason.MALFORMED
    assert result.error.startswith("body is not valid JSON")


@pytest.mark.parametrize(
    ("header", "version"),
    [(2, 2), ("2", 2), (b"2", 2), (bytearray(b"4"), 4), (" 3 ", 3), (10, 10)],
)
def test_schema_version_header_is_read(header: Any, version: int) -> None:
    """x-schema-version as an int, a decimal string or ASCII bytes gives that version."""
    env = make_envelope({}, type="T", headers={"x-schema-version": header})

    result = decode(env)

    assert result == Decoded("T", version, {})


def test_absent_schema_version_means_newest() -> None:
    """Without x-schema-version the version is None (the registry picks the newest)."""
    env = make_envelope({}, type="T", headers={"other": 1})

    result = decode(env)

    assert isinstance(result, Decoded)
    assert result.version is None


@pytest.mark.parametrize(
    "header",
    ["abc", True, False, 0, -1, [2], 2.0, "", "+2", b"\xff", {"v": 2}],
)
def test_bad_schema_version_is_malformed(header: Any) -> None:
    """A version header that is not a positive integer is malformed, and says so."""
    env = make_envelope({}, type="T", headers={"x-schema-version": header})

    result = decode(env)

    assert isinstance(result, DeadLetter)
    assert result.reason is Reason.MALFORMED
    assert "x-schema-version" in result.error


def test_superscript_digit_version_is_malformed() -> None:
    """A version header of '²' (a Unicode digit int() refuses) is malformed, not a crash."""
    env = make_envelope({}, type="T", headers={"x-schema-version": "²"})

    result = decode(env)

    assert isinstance(result, DeadLetter)
    assert result.reason is Reason.MALFORMED


def test_huge_numeric_version_is_malformed() -> None:
    """A 5,000-digit version header is malformed, not a crash."""
    env = make_envelope({}, type="T", headers={"x-schema-version": "9" * 5000})

    result = decode(env)

    assert isinstance(result, DeadLetter)
    assert result.reason is Reason.MALFORMED


def test_type_comes_from_the_type_property() -> None:
    """The type property wins over the routing key."""
    env = make_envelope({}, type="OrderCreated", routing_key="order.created")

    result = decode(env)

    assert isinstance(result, Decoded)
    assert result.message_type == "OrderCreated"


def test_type_falls_back_to_the_routing_key() -> None:
    """Without a type property the routing key is the message type."""
    env = make_envelope({}, routing_key="OrderCreated")

    result = decode(env)

    assert isinstance(result, Decoded)
    assert result.message_type == "OrderCreated"


@pytest.mark.parametrize("type_", [None, ""])
def test_no_type_and_no_routing_key_is_unknown_type(type_: str | None) -> None:
    """A message with neither a type nor a routing key is dead-lettered as unknown_type."""
    env = make_envelope({}, type=type_, routing_key="")

    result = decode(env)

    assert isinstance(result, DeadLetter)
    assert result.reason is Reason.UNKNOWN_TYPE
    assert result.message_type is None


def test_malformed_body_keeps_the_type_for_the_dead_letter_key() -> None:
    """A malformed message still carries its type, so its dead letter is keyed by it."""
    env = make_envelope(b"{", type="OrderCreated")

    result = decode(env)

    assert isinstance(result, DeadLetter)
    assert result.message_type == "OrderCreated"


# --- one reading of a body: duplicate keys, integers of any size --------------------------

@pytest.mark.parametrize(
    "body",
    [
        b'{"total_amount": -5, "currency": "EUR", "total_amount": 5}',
        b'{"order": {"lines": [{"sku": "a", "qty": 1, "qty": 2}]}}',
        b'[{"a": 1}, {"b": {"c": {"d": 1, "d": 1}}}]',
        b'{"a\\u003ab": 1, "x": 1, "x": 2}',
        b'{"n": 18446744073709551616, "n": 1}',
        b'{"t": "10:00", "t": "11:00"}',
    ],
    ids=["top level", "nested in a list", "deep, same value", "escaped colon", "with a big int",
         "colons in the values"],
)
def test_duplicate_key_at_any_depth_is_malformed(body: bytes) -> None:
    """An object with the same key twice is refused as malformed, naming the key."""
    result = decode(make_envelope(body, type="T"))

    assert isinstance(result, DeadLetter)
    assert result.reason is Reason.MALFORMED
    assert "twice in one object" in result.error


@pytest.mark.parametrize(
    "body",
    [b'{"a:b": 1, "a": "x:y", "c": {"d": "::"}}', b'{"url": "\\u003a//", "b": 1}',
     b'{"a": 1, "A": 1, "a ": 1}', b'[{"a": 1}, {"a": 1}]'],
    ids=["colons in keys and strings", "escaped colon", "near-duplicates", "same key twice"
                                                                           " in two objects"],
)
def test_distinct_keys_are_not_duplicates(body: bytes) -> None:
    """Colons inside keys and strings, escaped or not, and equal keys in sibling objects pass."""
    result = decode(make_envelope(body, type="T"))

    assert isinstance(result, Decoded)
    assert result.body == json.loads(body)


@pytest.mark.parametrize(
    "number",
    [-18446744073709551600, 18446744073709551616, -9223372036854775809, 2**64 - 1, -(2**63),
     10**40, -(10**400), 10**1000],
)
def test_integers_of_any_size_decode_exactly(number: int) -> None:
    """An integer beyond 64 bits, even past the range of a double, is read exactly."""
    body = f'{{"n": {number}, "xs": [{number}, 1.5]}}'.encode()

    result = decode(make_envelope(body, type="T"))

    assert isinstance(result, Decoded)
    assert result.body == {"n": number, "xs": [number, 1.5]}
    assert type(result.body["n"]) is int


def test_a_big_float_stays_a_float() -> None:
    """``1.8446744073709552e19`` written as a float is a float, next to a 19-digit string."""
    result = decode(make_envelope(b'{"f": 1.8446744073709552e19, "s": "1234567890123456789"}',
                                  type="T"))

    assert isinstance(result, Decoded)
    assert result.body == {"f": 1.8446744073709552e19, "s": "1234567890123456789"}
    assert type(result.body["f"]) is float


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[" + b"9" * 400 + b', "\\ud800"]', "lone surrogate"),
        (b"[" + b"9" * 400 + b", NaN]", "NaN"),
        (b"[" + b"9" * 400 + b", 1e999]", "infinite float"),
        (b"[" + b"9" * 400 + b', "\xff"]', "bad UTF-8"),
        (b"\xef\xbb\xbf[" + b"9" * 400 + b"]", "BOM"),
        (b"[" + b"9" * 5000 + b"]", "more digits than Python converts"),
        (b"[" * 990 + b"9" * 400 + b"]" * 990, "deep nesting"),
        (b"[" + b"9" * 400 + b",]", "trailing comma"),
    ],
)
def test_the_exact_reading_keeps_every_protection(body: bytes, why: str) -> None:
    """A body read exactly (a huge integer) is as strict as orjson: every defect is malformed."""
    result = decode(make_envelope(body, type="T"))

    assert isinstance(result, DeadLetter), why
    assert result.reason is Reason.MALFORMED
    assert result.error.startswith("body is not valid JSON"), result.error


def test_big_integers_encode_exactly() -> None:
    """``encode_body`` writes integers past 64 bits digit for digit, compactly."""
    value = {"n": -18446744073709551600, "s": "é", "xs": [2**64]}

    assert encode_body(value) == (b'{"n":-18446744073709551600,"s":"\xc3\xa9",'
                                  b'"xs":[18446744073709551616]}')
    assert encode_body({"a": [1, 2]}) == b'{"a":[1,2]}'
