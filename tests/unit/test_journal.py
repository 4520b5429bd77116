"""The journal of recent messages and the timeline ``follow`` prints from it."""

from __future__ import annotations

import itertools

import pytest

from router.core.envelope import Envelope, Properties
from router.core.journalnotes import arrival, decision
from router.core.ladder import RetryState
from router.core.outcome import Copy, DeadLetter, Decoded, Forward, Reason
from router.observe.journal import MAX_EVENTS, Journal
from router.tools.timeline import timeline


def clock() -> itertools.count[float]:
    return itertools.count(1_764_578_400.0, 0.25)  # 2025-12-01T08:40:00Z, then +250 ms


def journal(size: int = 10) -> Journal:
    ticks = clock()
    return Journal(size, clock=lambda: next(ticks))


def test_a_recorded_message_is_returned_as_json_able_events_in_order() -> None:
    """``get`` gives the message id, type, trace id and each event with its time."""
    j = journal()
    j.record("m-1", "arrived", type="Order", trace_id="ab" * 16)
    j.record("m-1", "routed", routes=["r"])

    found = j.get("m-1")

    assert found == {"message_id": "m-1", "type": "Order", "trace_id": "ab" * 16,
                     "truncated": False, "events": [
                         {"at": "2025-12-01T08:40:00.000Z", "event": "arrived", "type": "Order",
                          "trace_id": "ab" * 16},
                         {"at": "2025-12-01T08:40:00.250Z", "event": "routed", "routes": ["r"]}]}
    assert j.get("m-2") is None


def test_the_oldest_message_is_dropped_and_a_message_seen_again_is_young_again() -> None:
    """Bounded by message count; a retry or replay arriving moves its id to the newest."""
    j = journal(size=2)
    j.record("a", "arrived")
    j.record("b", "arrived")
    j.record("a", "arrived")  # a retry: now the newest
    j.record("c", "arrived")

    assert (j.get("a") is not None, j.get("b"), j.get("c") is not None) == (True, None, True)
    assert len(j) == 2


def test_events_per_message_are_bounded() -> None:
    """A message retried for ever keeps its first ``MAX_EVENTS`` events and says so."""
    j = journal()
    for _ in range(MAX_EVENTS + 5):
        j.record("m", "copy")

    found = j.get("m")

    assert found is not None
    assert len(found["events"]) == MAX_EVENTS
    assert found["truncated"] is True
    assert j.dropped_events == 5


def test_a_journal_of_size_zero_records_nothing_and_a_negative_size_is_refused() -> None:
    """``--journal-size 0`` turns it off."""
    j = Journal(0)
    j.record("m", "arrived")

    assert j.get("m") is None
    with pytest.raises(ValueError, match="0 or more"):
        Journal(-1)


def test_arrival_notes_version_publisher_retry_round_and_replay() -> None:
    """What arrived, as the router read it."""
    envelope = Envelope(b"{}", Properties(type="Order", user_id="shop", headers={
        "x-schema-version": 2, "x-mcp-replays": 1}), exchange="in", routing_key="Order")
    retry = RetryState("r", "e", "k", 3, 1, "nack", "in", "Order", "shop")

    detail = arrival(envelope, retry, "ab" * 16)

    assert detail == {"type": "Order", "exchange": "in", "routing_key": "Order",
                      "publisher": "shop", "trace_id": "ab" * 16, "redelivered": False,
                      "version": 2, "retry_round": 1, "route": "r", "last_error": "nack",
                      "replay": 1}


def test_decisions_name_the_routes_copies_and_policy_overrides() -> None:
    """A forward lists routes once and counts copies; a dead letter gives its reason."""
    copies = (Copy("a", "orders", "o.a"), Copy("a", "audit", "o.a"), Copy("b", "orders", "o.b"))
    forward = Forward(Decoded("Order", 1, {}), copies, overrides={"priority": 5,
                                                                  "expiration": None})

    event, detail = decision(forward)
    refused = decision(DeadLetter(Reason.SCHEMA_INVALID, "/x: bad", "Order"))

    assert (event, detail["routes"], detail["copies"]) == ("routed", ["a", "b"], 3)
    assert detail["policies"] == {"priority": 5, "expiration": None}
    assert refused == ("refused", {"type": "Order", "reason": "schema_invalid",
                                   "error": "/x: bad"})


def test_timeline_reads_as_what_happened_routed_retried_dead_lettered_replayed() -> None:
    """One line per event with its time of day; a replay and a retry round are named."""
    j = journal()
    j.record("m", "arrived", type="Order", exchange="in", routing_key="Order", version=1,
             publisher="shop", trace_id="ab" * 16)
    j.record("m", "routed", routes=["r"], copies=1, policies={"expiration": None})
    j.record("m", "copy", route="r", exchange="orders", routing_key="o", attempts=3,
             confirmed=False, error="returned by the broker: 312 NO_ROUTE")
    j.record("m", "retry", route="r", round=1, delay_seconds=1.0, error="...")
    j.record("m", "arrived", type="Order", exchange="in", routing_key="Order", retry_round=1,
             route="r")
    j.record("m", "dead_lettered", reason="unroutable", route="r", exchange="dlx",
             error="route 'r': returned", attempts=6)
    j.record("m", "arrived", type="Order", exchange="in", routing_key="Order", replay=1)
    j.record("m", "copy", route="r", exchange="orders", routing_key="o", attempts=1,
             confirmed=True, error=None)
    record = j.get("m")
    assert record is not None

    lines = timeline(record)

    assert lines[0] == (f"message m: Order, trace {'ab' * 16}, first seen "
                        "2025-12-01T08:40:00.000Z")
    assert lines[1:] == [
        "  08:40:00.000  arrived from exchange 'in' (routing key 'Order', v1, publisher 'shop')",
        "  08:40:00.250  routed to r (1 copy)",
        "  08:40:00.500  copy for 'r' to orders/o: NOT confirmed (3 attempts): returned by the "
        "broker: 312 NO_ROUTE",
        "  08:40:00.750  retry round 1 for 'r' in 1s (parked on the broker)",
        "  08:40:01.000  back from the retry tier: round 1 of route 'r'",
        "  08:40:01.250  dead-lettered as unroutable (route 'r') to 'dlx': route 'r': returned",
        "  08:40:01.500  arrived again: replay 1 (mcp-router dlq replay) from exchange 'in' "
        "(routing key 'Order')",
        "  08:40:01.750  copy for 'r' to orders/o: confirmed by the broker (1 attempt)",
    ]


def test_timeline_escapes_what_a_publisher_wrote() -> None:
    """A message type with an escape sequence is shown escaped, never obeyed."""
    lines = timeline({"message_id": "m", "type": "O\x1b[2J", "events": [
        {"at": "2025-12-01T08:40:00.000Z", "event": "refused", "reason": "malformed",
         "error": "bad\x1b]0;x"}]})

    assert "\x1b" not in "".join(lines)
    assert lines[1] == "  08:40:00.000  refused: malformed: bad\\x1b]0;x"
