"""Content headers that pamqp cannot decode or encode cost their message, never a connection."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pamqp.encode
import pamqp.frame
import pytest
from pamqp import commands, exceptions, header

from router.broker import wire
from router.broker.amqp import translate
from router.broker.encodable import MAX_HEADER_DEPTH, MAX_PROPERTIES_BYTES, fit_raw, screen
from router.core.envelope import Properties
from router.errors import TransientFailure, Unsendable
from tests.rawamqp import field_table, properties, shortstr


@pytest.fixture(autouse=True)
def _installed() -> Iterator[None]:
    wire.install()
    yield
    wire.uninstall()


def _frame(props: bytes, body_size: int = 11) -> bytes:
    payload = struct.pack(">HHQ", 60, 0, body_size) + props
    return struct.pack(">BHI", 2, 1, len(payload)) + payload + b"\xce"


def _decoded(fields: dict[str, bytes]) -> header.ContentHeader:
    _, channel, frame = pamqp.frame.unmarshal(_frame(properties(fields)))
    assert channel == 1
    assert isinstance(frame, header.ContentHeader)
    return frame


def _nested(depth: int) -> bytes:
    value = b"V"
    for _ in range(depth):
        value = b"F" + field_table([(b"n", value)])
    return value


BIG = struct.pack(">Q", 2**63)


def test_a_healthy_header_decodes_as_pamqp_decodes_it() -> None:
    """The stock decoder's result, unchanged, for everything it can decode."""
    frame = _decoded({"message_id": shortstr(b"m-1"),
                      "headers": field_table([(b"x-n", b"b\x05"), (b"x-s", b"S\0\0\0\x02hi")])})

    assert type(frame.properties) is commands.Basic.Properties
    assert frame.properties.message_id == "m-1"
    assert frame.properties.headers == {"x-n": 5, "x-s": "hi"}


@pytest.mark.parametrize(("fields", "problem"), [
    pytest.param({"timestamp": BIG}, "property timestamp does not decode", id="timestamp"),
    pytest.param({"headers": field_table([(b"t", b"T" + BIG), (b"ok", b"b\x01")])},
                 "header 't' (T) does not decode: ValueError", id="header-timestamp"),
    pytest.param({"headers": field_table([(b"deep", _nested(600)), (b"ok", b"b\x01")])},
                 "header 'deep' (F) does not decode: RecursionError", id="600-deep"),
    pytest.param({"headers": field_table([(b"\xff", b"b\x01"), (b"ok", b"b\x01")])},
                 "header key b'\\xff' is not UTF-8", id="key-not-utf8"),
    pytest.param({"message_id": shortstr(b"\xff" * 255)}, "property message_id is not UTF-8",
                 id="message-id-not-utf8"),
    pytest.param({"headers": field_table([(b"ok", b"b\x01"), (b"z", b"Z\x01")])},
                 "field type b'Z' is unknown", id="unknown-type"),
])
def test_an_undecodable_header_keeps_the_frame_and_says_why(fields: dict[str, bytes],
                                                            problem: str) -> None:
    """The frame keeps its body size; what decodes is kept; the loss is named."""
    frame = _decoded({"app_id": shortstr(b"shop"), **fields, "user_id": shortstr(b"svc")})

    assert frame.body_size == 11
    props = frame.properties
    assert isinstance(props, wire.Undecoded)
    assert any(problem in p for p in props.problems), props.problems
    assert props.app_id == "shop"
    assert props.user_id == "svc"
    if "headers" in fields:
        assert props.raw_headers == fields["headers"]
        assert props.headers.get("ok") == 1


def test_a_shortstr_that_is_not_utf8_is_recovered_within_its_length() -> None:
    """Replacement characters never push a short string past 255 bytes."""
    props = _decoded({"message_id": shortstr(b"\xff" * 255)}).properties

    assert len(props.message_id.encode("utf-8")) <= 255


def test_a_truncated_frame_still_raises_as_before() -> None:
    """A frame too short for its own header is the broker's fault: pamqp's error stands."""
    with pytest.raises(exceptions.UnmarshalingException):
        wire.unmarshal_header(b"\x00\x3c\x00")


def test_uninstall_restores_pamqps_decoder() -> None:
    """Without the hook pamqp raises for the hostile header (what ended the connection)."""
    wire.uninstall()
    with pytest.raises(exceptions.UnmarshalingException):
        pamqp.frame.unmarshal(_frame(properties({"timestamp": BIG})))


def test_a_sendable_delivery_passes_the_screen_unchanged() -> None:
    """The fast path: the same object back, no problems."""
    p = Properties(message_id="m", headers={"a": 1, "b": [1.5, {"c": b"\xff"}]},
                   timestamp=datetime(2026, 1, 1, tzinfo=UTC), delivery_mode=2)

    kept, problems = screen(p)

    assert kept is p
    assert problems == []


@pytest.mark.parametrize(("properties_", "problem", "kept_headers"), [
    pytest.param(Properties(headers={"small": Decimal("1E-300"), "ok": 1}),
                 "header 'small' cannot be sent on (TypeError", {"ok": 1}, id="decimal-scale"),
    pytest.param(Properties(headers={"k" * 129: 1, "ok": 1}), "is longer than 128 bytes",
                 {"ok": 1}, id="long-key"),
    pytest.param(Properties(headers={"n": {"k" * 129: 1}}), "header 'n' has a key longer", {},
                 id="long-nested-key"),
    pytest.param(Properties(headers={"int": 2**64}), "header 'int' cannot be sent on", {},
                 id="int-out-of-range"),
    pytest.param(Properties(delivery_mode=7), "property delivery_mode is 7", {},
                 id="delivery-mode"),
])
def test_what_cannot_be_sent_on_is_named_and_left_out(properties_: Properties, problem: str,
                                                      kept_headers: dict[str, object]) -> None:
    """The dead letter carries what can be sent, the problems say what could not."""
    kept, problems = screen(properties_)

    assert any(problem in p for p in problems), problems
    assert dict(kept.headers) == kept_headers
    assert screen(kept) == (kept, [])


def test_headers_nested_deeper_than_the_limit_are_refused_without_recursion() -> None:
    """A nesting that would hit the recursion limit when encoded is measured iteratively."""
    value: object = 1
    for _ in range(5000):
        value = [value]

    kept, problems = screen(Properties(headers={"deep": value}))

    assert problems == [f"header 'deep' is nested more than {MAX_HEADER_DEPTH} deep"]
    assert dict(kept.headers) == {}


@pytest.mark.parametrize("value", [1e300, 0.1, -2.5e-310])
def test_a_double_header_is_sent_on_as_a_double(value: float) -> None:
    """Once installed, a float that 32 bits cannot hold is written as ``d``, exactly."""
    p = Properties(headers={"x": value})

    kept, problems = screen(p)
    encoded = header.ContentHeader(0, 0, commands.Basic.Properties(headers={"x": value})).marshal()

    assert (kept, problems) == (p, [])
    assert b"d" + struct.pack(">d", value) in encoded


def test_a_float_that_fits_32_bits_stays_a_float() -> None:
    """Values 32 bits hold exactly keep pamqp's ``f`` encoding."""
    encoded = header.ContentHeader(0, 0, commands.Basic.Properties(headers={"x": 0.5})).marshal()

    assert b"f" + struct.pack(">f", 0.5) in encoded


def test_an_encoding_error_of_pamqp_is_a_permanent_failure() -> None:
    """What pamqp cannot encode is Unsendable (never retried); our own TypeError is not."""
    try:
        pamqp.encode.table_integer(2**64)
    except TypeError as exc:
        from_pamqp = translate(exc)
    try:
        raise TypeError("a bug of ours")
    except TypeError as exc:
        ours = translate(exc)

    assert isinstance(from_pamqp, Unsendable)
    assert "Unsupported numeric value" in str(from_pamqp)
    assert isinstance(ours, TransientFailure)


def test_headers_that_leave_no_room_in_a_frame_are_left_out_largest_first() -> None:
    """Properties near frame_max would close the router's publishing connection: cut down."""
    p = Properties(headers={"small": "s", "big": "y" * 120_000})

    kept, problems = screen(p)

    assert dict(kept.headers) == {"small": "s"}
    [problem] = problems
    assert problem.startswith("header 'big' left out: the properties take 120,")
    assert f"{MAX_PROPERTIES_BYTES:,}" in problem


def test_a_raw_table_too_large_for_the_dead_letter_is_left_out() -> None:
    """The recovered headers go first; a raw table that alone is too large goes too."""
    p = Properties(headers={"a": 1})

    assert fit_raw(p, b"x" * 10) == (p, b"x" * 10, [])
    kept, raw, problems = fit_raw(p, b"x" * 120_000)
    assert (dict(kept.headers), raw, len(problems)) == ({}, None, 2)
    kept, raw, problems = fit_raw(Properties(headers={"a": "y" * 60_000}), b"x" * 60_000)
    assert (dict(kept.headers), raw, len(problems)) == ({}, b"x" * 60_000, 1)


def _deliver(routing_key: bytes) -> bytes:
    method = struct.pack(">HH", 60, 60) + shortstr(b"ctag") + struct.pack(">Q", 7) + b"\x01" \
        + shortstr(b"mcp.ingress") + shortstr(routing_key)
    return struct.pack(">BHI", 1, 1, len(method)) + method + b"\xce"


def test_a_deliver_with_a_routing_key_not_in_utf8_is_recovered() -> None:
    """The delivery keeps its tag and flags; the key gets replacement characters, the problem
    is noted on the method."""
    _, _, method = pamqp.frame.unmarshal(_deliver(b"rk.\xff"))

    assert isinstance(method, commands.Basic.Deliver)
    assert (method.consumer_tag, method.delivery_tag, method.redelivered) == ("ctag", 7, True)
    assert (method.exchange, method.routing_key) == ("mcp.ingress", "rk.\ufffd")
    assert method.wire_problems == ["routing key b'rk.\\xff' is not UTF-8"]


def test_a_healthy_deliver_is_pamqps_own() -> None:
    """A routing key in UTF-8 is decoded by pamqp, with no problems attached."""
    _, _, method = pamqp.frame.unmarshal(_deliver(b"rk.ok"))

    assert method.routing_key == "rk.ok"
    assert not hasattr(method, "wire_problems")


@pytest.mark.parametrize("properties_", [
    Properties(headers={"s": "\ud800"}), Properties(message_id="\udfff"),
    Properties(headers={"when": datetime(1960, 1, 1, tzinfo=UTC)}),
    Properties(headers={"n": [[[{"k": Decimal("1E-300")}]]]}), Properties(priority=256),
])
def test_the_quick_look_never_passes_what_does_not_encode(properties_: Properties) -> None:
    """Lone surrogates, dates before 1970, nested bad decimals, a priority past 255: named."""
    kept, problems = screen(properties_)

    assert problems
    assert screen(kept) == (kept, [])
