"""Dead letters without a broker: reading, filtering, grouping, replaying and showing them."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from router.config.configuration import Config
from router.core.counts import plural
from router.core.envelope import Envelope, Properties
from router.core.outcome import Copy, DeadLetter, Decoded, Forward, Reason
from router.core.pipeline import decide
from router.tools.letters import (
    Filter,
    Letter,
    fingerprint,
    group,
    make_filter,
    normalise,
    parse_time,
    read_letter,
    replay_envelope,
    replay_properties,
    replay_target,
)
from router.tools.lettertext import (
    body_lines,
    clean,
    group_record,
    group_table,
    letter_record,
    letter_table,
    outcome_text,
    progress_bar,
    show_lines,
)
from router.tools.terminal import Progress
from tests.unit.conftest import ORDER_SCHEMA, LoadConfig

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def dead(body: bytes = b'{"order_id": "x"}', *, routing_key: str = "schema_invalid.Order",
         **headers: Any) -> Envelope:
    """A delivery from the DLQ with the router's headers (overridable, None removes)."""
    h: dict[str, Any] = {
        "x-mcp-reason": "schema_invalid", "x-mcp-error": "Order v1: /order_id: format",
        "x-mcp-original-exchange": "mcp.ingress", "x-mcp-original-routing-key": "order.in",
        "x-mcp-attempts": 1, "x-mcp-dead-lettered-at": "2026-11-24T11:00:00.250Z",
        "traceparent": TRACE, "tracestate": "k=v", "x-schema-version": 1,
        "x-custom": "kept",
    }
    h.update(headers)
    h = {k: v for k, v in h.items() if v is not None}
    props = Properties(content_type="application/json", headers=h, message_id="m-1",
                       type="Order", delivery_mode=2, app_id="shop")
    return Envelope(body, props, "mcp.dlx", routing_key)


def letter(**overrides: Any) -> Letter:
    """A read dead letter; ``type=None`` drops the type property."""
    envelope = dead(**{k: v for k, v in overrides.items() if k != "type"})
    if "type" in overrides:
        envelope = Envelope(envelope.body, Properties(**{
            **{f: getattr(envelope.properties, f) for f in envelope.properties.__slots__},
            "type": overrides["type"]}), envelope.exchange, envelope.routing_key)
    return read_letter(envelope)


# --- reading ---------------------------------------------------------------------------------

def test_router_dead_letter_is_read_from_its_headers() -> None:
    """Reason, error, time, attempts and origin come from the x-mcp-* headers."""
    result = letter()

    assert (result.reason, result.error) == ("schema_invalid", "Order v1: /order_id: format")
    assert result.dead_lettered_at == datetime(2026, 11, 24, 11, 0, 0, 250000, tzinfo=UTC)
    assert (result.attempts, result.replays) == (1, 0)
    assert (result.original_exchange, result.original_routing_key) == ("mcp.ingress", "order.in")
    assert (result.message_type, result.message_id) == ("Order", "m-1")


def test_type_is_read_from_the_dead_letter_routing_key_when_the_property_is_absent() -> None:
    """Without a type property, ``<reason>.<Type>`` names the type."""
    result = letter(type=None, routing_key="schema_invalid.OrderCreated")

    assert result.message_type == "OrderCreated"


def test_the_unknown_placeholder_is_no_type() -> None:
    """``unknown_type.unknown`` with no original routing key means the message had no type."""
    result = letter(type=None, routing_key="unknown_type.unknown",
                    **{"x-mcp-reason": "unknown_type", "x-mcp-original-routing-key": ""})

    assert result.message_type is None


def test_broker_dead_letter_is_read_from_x_death() -> None:
    """A message the ingress queue dead-lettered itself has the x-death reason and time."""
    at = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    death = {"reason": "delivery_limit", "time": at, "queue": "mcp.router.ingress",
             "exchange": "mcp.ingress", "routing-keys": ["order.in"], "count": 1}
    envelope = Envelope(b"{}", Properties(headers={"x-death": [death]}), "mcp.ingress",
                        "order.in")

    result = read_letter(envelope)

    assert (result.reason, result.dead_lettered_at) == ("delivery_limit", at)
    assert "delivery_limit" in result.error
    assert "mcp.router.ingress" in result.error
    assert (result.original_exchange, result.original_routing_key) == ("mcp.ingress", "order.in")
    assert result.message_type == "order.in"
    assert result.message_id is None


def test_headers_of_any_shape_never_break_reading() -> None:
    """Wrong types and bad timestamps become unknowns; bytes are decoded."""
    result = letter(**{"x-mcp-reason": b"malformed", "x-mcp-error": 7, "x-mcp-attempts": "x",
                       "x-mcp-dead-lettered-at": "yesterday", "x-mcp-replays": True,
                       "x-death": "garbage"})

    assert (result.reason, result.error) == ("malformed", "")
    assert (result.attempts, result.dead_lettered_at, result.replays) == (None, None, 0)


def test_a_message_without_any_verdict_is_unknown() -> None:
    """No x-mcp-reason and no x-death: reason ``unknown``, nothing invented."""
    result = read_letter(Envelope(b"", Properties(), "", "whatever"))

    assert (result.reason, result.error, result.message_type) == ("unknown", "", None)


# --- time and filters ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("30s", NOW - timedelta(seconds=30)),
    ("15m", NOW - timedelta(minutes=15)),
    ("2h", NOW - timedelta(hours=2)),
    ("1d", NOW - timedelta(days=1)),
    ("1.5H", NOW - timedelta(minutes=90)),
    ("2026-11-24T10:00:00Z", datetime(2026, 11, 24, 10, tzinfo=UTC)),
    ("2026-11-24T10:00:00", datetime(2026, 11, 24, 10, tzinfo=UTC)),
    ("2026-11-24T12:00:00+02:00", datetime(2026, 11, 24, 10, tzinfo=UTC)),
    ("2026-11-24", datetime(2026, 11, 24, tzinfo=UTC)),
])
def test_times_are_iso_8601_or_ages(text: str, expected: datetime) -> None:
    """ISO times are UTC unless they say otherwise; ages count back from now."""
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["soon", "10x", "", "99999999999d"])
def test_a_bad_time_says_what_is_accepted(text: str) -> None:
    """An unreadable time is a ValueError naming both accepted forms."""
    with pytest.raises(ValueError, match=r"ISO 8601 .* 30s"):
        parse_time(text, NOW)


def test_since_after_until_is_refused() -> None:
    """A window that ends before it starts is an error, not an empty list."""
    with pytest.raises(ValueError, match="--since is later than --until"):
        make_filter(now=NOW, since="1h", until="2h")


def test_make_filter_parses_times_and_refuses_unknown_criteria() -> None:
    """Text criteria become a Filter (times against now); an unknown criterion is a TypeError."""
    assert make_filter(now=NOW, reason="schema_*", since="2h", until=None) == Filter(
        reason="schema_*", since=NOW - timedelta(hours=2))
    with pytest.raises(TypeError, match="colour"):
        make_filter(now=NOW, colour="red")


@pytest.mark.parametrize(("flt", "matches"), [
    (Filter(), True),
    (Filter(reason="schema_invalid"), True),
    (Filter(reason="schema_*"), True),
    (Filter(reason="malformed"), False),
    (Filter(message_type="Ord*"), True),
    (Filter(message_type="Payment"), False),
    (Filter(message_id="m-1"), True),
    (Filter(message_id="m-2"), False),
    (Filter(since=NOW - timedelta(hours=2)), True),
    (Filter(since=NOW - timedelta(minutes=30)), False),
    (Filter(until=NOW - timedelta(minutes=30)), True),
    (Filter(until=NOW - timedelta(hours=2)), False),
])
def test_filter_criteria_all_must_hold(flt: Filter, matches: bool) -> None:
    """Reason and type are globs, the id is exact, since/until bound the time."""
    assert flt.matches(letter()) is matches


def test_a_letter_without_time_matches_no_time_window() -> None:
    """An unknown time is neither after --since nor before --until."""
    untimed = letter(**{"x-mcp-dead-lettered-at": None})

    assert not Filter(since=NOW - timedelta(days=1)).matches(untimed)
    assert not Filter(until=NOW).matches(untimed)
    assert Filter().matches(untimed)


# --- fingerprints and groups -----------------------------------------------------------------

@pytest.mark.parametrize(("error", "expected"), [
    ("Order v2: /items/0/quantity: minimum: -3 is less than the minimum of 1",
     "Order v2: /items/<n>/quantity: minimum: <n> is less than the minimum of <n>"),
    ("route 'a': returned by the broker: 312 NO_ROUTE (exchange 'x', routing key 'y')",
     "route <str>: returned by the broker: <n> NO_ROUTE (exchange <str>, routing key <str>)"),
    ("order 6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11 is unknown", "order <uuid> is unknown"),
    ("id deadbeef42 or 0x1F at 2026-11-24T10:00:00.5Z", "id <hex> or <hex> at <time>"),
    ("body is not valid JSON:  line 1\ncolumn 2", "body is not valid JSON: line <n> column <n>"),
    ("the body is not UTF-8 (byte 12), not ISO-8859-1", "the body is not UTF-8 (byte <n>), not "
     "ISO-8859-1"),
])
def test_errors_are_normalised_to_their_cause(error: str, expected: str) -> None:
    """Numbers, UUIDs, quoted strings, hex ids and times become placeholders."""
    assert normalise(error) == expected


def test_fingerprint_is_shared_by_one_cause_and_differs_by_reason() -> None:
    """Same cause, other numbers: one fingerprint; another reason: another fingerprint."""
    a = fingerprint("schema_invalid", "/items/0/quantity: minimum: 0 is less than 1")
    b = fingerprint("schema_invalid", "/items/3/quantity: minimum: -7 is less than 1")
    c = fingerprint("malformed", "/items/0/quantity: minimum: 0 is less than 1")

    assert a == b
    assert a[1] != c[1]
    assert len(a[1]) == 10


def test_groups_count_letters_by_reason_and_fingerprint_largest_first() -> None:
    """Groups carry counts, first and last time, types and an example id."""
    letters = [letter(**{"x-mcp-error": f"/q: {n} is less than 1",
                         "x-mcp-dead-lettered-at": f"2026-11-24T0{n}:00:00Z"}) for n in (1, 2, 3)]
    letters.append(letter(**{"x-mcp-reason": "malformed", "x-mcp-error": "not JSON"}))

    groups = group(letters)

    assert [(g.reason, g.count) for g in groups] == [("schema_invalid", 3), ("malformed", 1)]
    assert groups[0].error == "/q: <n> is less than <n>"
    assert groups[0].first == datetime(2026, 11, 24, 1, tzinfo=UTC)
    assert groups[0].last == datetime(2026, 11, 24, 3, tzinfo=UTC)
    assert (groups[0].types, groups[0].example) == (("Order",), "m-1")
    assert json.loads(json.dumps(group_record(groups[0])))["count"] == 3


# --- replay ----------------------------------------------------------------------------------

def test_replay_drops_the_verdict_and_keeps_the_message() -> None:
    """x-mcp-* and broker dead-letter headers go; trace, schema version and the rest stay."""
    source = letter(**{"x-mcp-route": "r", "x-mcp-publisher": "svc", "x-delivery-count": 3,
                       "x-death": [{"reason": "rejected"}], "x-first-death-queue": "q"})

    props = replay_properties(source)

    assert props.headers == {"traceparent": TRACE, "tracestate": "k=v", "x-schema-version": 1,
                             "x-custom": "kept", "x-mcp-replays": 1}
    assert (props.message_id, props.type, props.content_type) == ("m-1", "Order",
                                                                  "application/json")
    assert (props.delivery_mode, props.app_id, props.user_id) == (2, "shop", None)


def test_replay_counts_previous_replays() -> None:
    """A dead letter replayed twice before is sent with x-mcp-replays 3."""
    assert replay_properties(letter(**{"x-mcp-replays": 2})).headers["x-mcp-replays"] == 3


def test_user_id_is_never_replayed() -> None:
    """RabbitMQ refuses a user_id other than the connection's: it is dropped."""
    source = letter()
    with_user = read_letter(Envelope(source.envelope.body, source.envelope.properties
                                     .with_headers(source.headers, user_id="svc")))

    assert replay_properties(with_user).user_id is None


@pytest.mark.parametrize(("kwargs", "headers", "expected"), [
    ({}, {}, ("mcp.ingress", "order.in")),
    ({}, {"x-mcp-original-routing-key": ""}, ("mcp.ingress", "Order")),
    ({"to": "fix"}, {}, ("fix", "order.in")),
    ({"to": "fix"}, {"x-mcp-destination-routing-key": "dest.rk"}, ("fix", "dest.rk")),
    ({"to": "fix", "routing_key": "rk"}, {"x-mcp-destination-routing-key": "d"}, ("fix", "rk")),
    ({"routing_key": "rk"}, {}, ("mcp.ingress", "rk")),
])
def test_replay_target(kwargs: dict[str, str], headers: dict[str, Any],
                       expected: tuple[str, str]) -> None:
    """The ingress with the original key (else the type), or --to with the copy's key."""
    assert replay_target(letter(**headers), ingress="mcp.ingress", **kwargs) == expected


def test_dry_run_decides_with_the_router_pipeline(config: LoadConfig) -> None:
    """The replayed envelope goes through ``decide``: a fixed schema routes it."""
    topology = {"exchanges": [{"name": "orders", "type": "topic"}],
                "routes": [{"name": "order", "message_type": "Order",
                            "to": [{"exchange": "orders", "routing_key": "o"}]}]}
    shop: Config = config(topology=topology, schemas={"Order/v1.json": ORDER_SCHEMA})
    good = letter(body=json.dumps({"order_id": "6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11",
                                   "quantity": 1}).encode())

    routed = decide(replay_envelope(good, "mcp.ingress", "order.in"), shop)
    refused = decide(replay_envelope(letter(), "mcp.ingress", "order.in"), shop)

    assert outcome_text(routed) == "would route: order -> orders/o"
    assert outcome_text(refused).startswith("would dead-letter: schema_invalid: Order v1: ")


# --- rendering -------------------------------------------------------------------------------

def test_clean_escapes_what_a_terminal_would_obey() -> None:
    """Escape sequences, bidi overrides and lone surrogates are shown escaped."""
    assert clean("a\x1b[31mb\u202ec\ud800\n") == "a\\x1b[31mb\\u202ec\\ud800\\n"
    assert clean("héllo wörld") == "héllo wörld"
    assert clean("abcdefghij", 6) == "abc..."


def test_table_has_a_header_and_cuts_long_errors() -> None:
    """One aligned line per letter; long errors end with '...'."""
    lines = letter_table([letter(**{"x-mcp-error": "e" * 500})])

    assert lines[0].split() == ["TIME", "REASON", "TYPE", "MESSAGE", "ID", "ATTEMPTS", "ERROR"]
    assert lines[1].split()[:5] == ["2026-11-24T11:00:00.250Z", "schema_invalid", "Order",
                                    "m-1", "1"]
    assert lines[1].endswith("e...")
    assert len(lines[1]) < 250


def test_tables_of_no_letters_are_just_the_header() -> None:
    """An empty dead-letter queue lists as a header line, for letters and for groups."""
    assert letter_table([]) == ["TIME  REASON  TYPE  MESSAGE ID  ATTEMPTS  ERROR"]
    assert group_table([]) == ["COUNT  REASON  FINGERPRINT  LAST  ERROR"]


def test_counts_are_singular_for_one() -> None:
    """``1 dead letter``, ``2 dead letters``, ``0 priorities``, ``1 priority``."""
    assert plural(1, "dead letter") == "1 dead letter"
    assert plural(2, "dead letter") == "2 dead letters"
    assert plural(0, "priority", "priorities") == "0 priorities"
    assert plural(1, "priority", "priorities") == "1 priority"


def test_record_is_json_with_the_trace_id() -> None:
    """``--json`` records hold the fields scripts need, including the trace id."""
    record = json.loads(json.dumps(letter_record(letter())))

    assert record["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert record["dead_lettered_at"] == "2026-11-24T11:00:00.250Z"
    assert (record["reason"], record["replays"], record["size"]) == ("schema_invalid", 0, 17)


def test_show_lists_every_property_and_header_and_the_body() -> None:
    """Properties (absent ones as '-'), sorted headers, trace id and pretty JSON."""
    lines = show_lines(letter())

    assert "  trace id:        0af7651916cd43dd8448eb211c80319c" in lines
    assert "  app_id: shop" in lines
    assert "  correlation_id: -" in lines
    assert "  x-mcp-attempts: 1" in lines
    headers = [x for x in lines[lines.index("headers:") + 1:] if x.startswith("  x-")]
    assert headers == sorted(headers)
    assert lines[-3:] == ["{", '  "order_id": "x"', "}"]


@pytest.mark.parametrize("body", [b"\xff\x00not json", b"[" * 300 + b"]" * 300])
def test_a_body_that_is_not_printable_json_is_shown_as_a_repr(body: bytes) -> None:
    """Binary and too-deep bodies are shown as a Python bytes repr, nothing raw."""
    [line] = body_lines(body)

    assert line.startswith("b'")
    assert "\x00" not in line


def test_outcome_text_names_each_copy() -> None:
    """Forward lists route -> exchange/key; a dead letter gives reason and error."""
    forward = Forward(Decoded("T", None, {}), (Copy("a", "x", "k1"), Copy("b", "y", "k2")))

    assert outcome_text(forward) == "would route: a -> x/k1, b -> y/k2"
    assert outcome_text(DeadLetter(Reason.MALFORMED, "bad\x1b")) == \
        "would dead-letter: malformed: bad\\x1b"


def test_outcome_text_marks_a_shadow_copy() -> None:
    """A dry run shows which copy would go to a shadow."""
    forward = Forward(Decoded("T", None, {}), (Copy("a", "x", "k1"),
                                               Copy("a", "y", "k2", branch="n", shadow=True)))

    assert outcome_text(forward) == "would route: a -> x/k1, a -> y/k2 (shadow)"


def test_progress_bar_and_its_output() -> None:
    """A plain-text bar; without a terminal only a few lines for many updates."""
    stream = io.StringIO()
    progress = Progress("replay", 100, stream)

    for done in range(1, 101):
        progress.update(done)

    assert progress_bar("replay", 50, 100) == "replay [##########..........] 50/100"
    assert stream.getvalue().splitlines() == [progress_bar("replay", n, 100)
                                              for n in (25, 50, 75, 100)]


def test_progress_is_redrawn_in_place_on_a_terminal() -> None:
    """On a terminal each update rewrites the line with a carriage return."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress("purge", 3, stream)

    progress.update(1)
    progress.update(2)
    progress.close()

    assert stream.getvalue() == "\rpurge [######..............] 1/3" \
                                "\rpurge [#############.......] 2/3\n"


@pytest.mark.parametrize(("value", "read"), [(2**63 - 1, 2**31 - 1), ("9" * 5000, None),
                                             (-3, 0), ("٣", None)])
def test_forged_counts_are_read_in_range(value: object, read: int | None) -> None:
    """A publisher's count can be absurd: it is read within range and never crashes a listing."""
    assert letter(**{"x-mcp-attempts": value}).attempts == read


def test_a_replay_of_a_forged_replay_count_stays_encodable() -> None:
    """x-mcp-replays near the top of its type never overflows when counted up."""
    props = replay_properties(letter(**{"x-mcp-replays": 2**63 - 1}))

    assert props.headers["x-mcp-replays"] == 2**31 - 1
