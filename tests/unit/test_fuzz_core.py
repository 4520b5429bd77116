"""Property-based fuzzing of the pure core (hypothesis): any input, exactly one outcome.

For any body bytes, any header values of any AMQP field type (out-of-range numbers,
deep nesting, bytes that are not UTF-8), any ``x-schema-version`` and any properties,
recognising a retry, admission, decoding, validation, routing and upcasting
(``original`` then ``decide``, on the repository's own configuration, whose
``order-created`` route upcasts v1 orders to v2) return one ``Outcome`` and never raise.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.config.configuration import Config, load_config
from router.core.envelope import Envelope, Properties
from router.core.outcome import DeadLetter, Delay, Forward, Outcome
from router.core.pipeline import decide, original
from router.core.upcast import Failed, run

ROOT = Path(__file__).resolve().parents[2]
OUTCOMES = get_args(Outcome)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Every AMQP 0-9-1 field-table value type pamqp can hand over, and some it cannot.
scalars = st.one_of(
    st.none(), st.booleans(), st.text(max_size=40), st.binary(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.datetimes(timezones=st.just(UTC)),
)
header_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20)
headers = st.dictionaries(
    st.one_of(st.text(max_size=20), st.sampled_from([
        "x-schema-version", "traceparent", "tracestate", "x-mcp-attempts", "x-mcp-retries",
        "x-mcp-retry-route", "x-mcp-retry-exchange", "x-mcp-retry-routing-key",
        "x-mcp-publisher", "x-mcp-replays", "x-delivery-count", "x-death"])),
    header_values, max_size=8)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30)),
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.text(max_size=15), inner, max_size=5)),
    max_leaves=30)
order_fields = st.fixed_dictionaries({}, optional={
    "order_id": st.one_of(st.uuids().map(str), json_values),
    "customer_id": st.one_of(st.text(max_size=10), json_values),
    "total_amount": st.one_of(st.floats(allow_nan=False), st.integers(), json_values),
    "amount": json_values, "currency": st.one_of(st.sampled_from(["EUR", "USD"]), json_values),
    "created_at": st.one_of(st.just("2026-11-24T10:00:00Z"), json_values),
    "items": st.one_of(st.lists(st.dictionaries(st.sampled_from(
        ["sku", "quantity", "unit_price"]), json_values), max_size=3), json_values),
})
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    order_fields.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
text_or_none = st.one_of(st.none(), st.text(max_size=30))
properties = st.builds(
    Properties,
    content_type=st.one_of(st.none(), st.sampled_from(["application/json", "text/plain", ""]),
                           st.text(max_size=20)),
    content_encoding=text_or_none, headers=headers,
    delivery_mode=st.one_of(st.none(), st.integers(-5, 300)),
    priority=st.one_of(st.none(), st.integers(-(2**40), 2**40)),
    correlation_id=text_or_none, reply_to=text_or_none,
    expiration=st.one_of(text_or_none, st.integers(-10, 10**12).map(str)),
    message_id=text_or_none,
    timestamp=st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
    type=st.one_of(st.none(), st.sampled_from(["OrderCreated", "OrderUpdated",
                                               "OrderCancelled", "PaymentCaptured", ""]),
                   st.text(max_size=20)),
    user_id=st.one_of(st.none(), st.sampled_from(["guest", "payments", "shop"]),
                      st.text(max_size=10)),
    app_id=text_or_none,
)
envelopes = st.builds(Envelope, body=bodies, properties=properties,
                      exchange=st.text(max_size=20), routing_key=st.text(max_size=40),
                      redelivered=st.booleans())


@pytest.fixture(scope="module")
def config() -> Config:
    """The repository's own configuration: every policy kind, a versioned route."""
    return load_config(ROOT)


def _one_outcome(envelope: Envelope, config: Config) -> Outcome:
    message, retry = original(envelope, "guest")
    outcome = decide(message, config, retry)
    assert isinstance(outcome, OUTCOMES)
    assert sum(isinstance(outcome, kind) for kind in (Forward, DeadLetter, Delay)) == 1
    return outcome


@FUZZ
@given(envelope=envelopes)
def test_any_envelope_gets_exactly_one_outcome(config: Config, envelope: Envelope) -> None:
    """Any body, headers and properties: one Forward, DeadLetter or Delay, never a raise."""
    _one_outcome(envelope, config)


@FUZZ
@given(body=order_fields, version=header_values, user=st.sampled_from(["guest", "shop", None]))
def test_any_order_and_schema_version_header(config: Config, body: dict[str, Any],
                                             version: Any, user: str | None) -> None:
    """OrderCreated bodies of any shape under any x-schema-version value are decided once;
    a routed one carries copies, a dead letter says why."""
    envelope = Envelope(json.dumps(body).encode(), Properties(
        content_type="application/json", type="OrderCreated", message_id="m-1",
        user_id=user, headers={"x-schema-version": version}))

    outcome = _one_outcome(envelope, config)

    if isinstance(outcome, Forward):
        assert outcome.copies
    elif isinstance(outcome, DeadLetter):
        assert outcome.error


@FUZZ
@given(body=json_values)
def test_upcasting_any_value_returns_a_value_or_a_failure(config: Config, body: Any) -> None:
    """The OrderCreated v1 -> v2 upcaster on any JSON value: an object, or ``Failed`` for
    anything that is not one."""
    chain = config.registry.lineage("OrderCreated").chain(1, 2)

    result = run(chain, body)

    assert isinstance(result, dict) if isinstance(body, dict) else isinstance(result, Failed)


def test_strategies_cover_every_amqp_value_type() -> None:
    """The header strategy reaches ints beyond 64 bits, NaN, Decimal, datetimes, bytes."""
    seen: set[type] = set()

    @settings(max_examples=300, deadline=None)
    @given(value=scalars)
    def collect(value: Any) -> None:
        seen.add(type(value))

    collect()

    assert {int, float, Decimal, datetime, bytes, str, bool, type(None)} <= seen
