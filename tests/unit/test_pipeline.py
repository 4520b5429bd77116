"""The pure core end to end: one envelope and a config in, one outcome out."""

from __future__ import annotations

from dataclasses import replace
from textwrap import dedent
from typing import Any

import pytest

from router.config.configuration import Config
from router.core.outcome import Copy, DeadLetter, Forward, Reason
from router.core.pipeline import decide
from tests.unit.conftest import ORDER_SCHEMA, LoadConfig, make_envelope

UUID = "6f1c2a4e-3b0d-4c8e-9a57-2d8f0e1b7c93"
GOOD = {"order_id": UUID, "quantity": 2}
TOPOLOGY = dedent("""\
    exchanges:
      - {name: orders, type: topic}
      - {name: audit, type: fanout}
    routes:
      - name: order
        message_type: Order
        to: [{exchange: orders, routing_key: order.created}]
      - name: bulk
        message_type: Order
        when: 'message.quantity >= 100'
        to: [{exchange: orders, routing_key: order.bulk}]
      - name: audit-orders
        message_type: "Ord*"
        to: [{exchange: audit}]
      - name: vip
        message_type: Lonely
        when: 'properties.user_id == "vip"'
        to: [{exchange: orders}]
    """)


@pytest.fixture
def shop(config: LoadConfig) -> Config:
    """A config with Order (routed), Lonely (conditionally routed) and Orphan (no route)."""
    return config(
        topology=TOPOLOGY,
        schemas={"Order/v1.json": ORDER_SCHEMA, "Lonely/v1.json": {"type": "object"},
                 "Orphan/v1.json": {"type": "object"}},
    )


def test_valid_message_is_forwarded_to_every_matching_route(shop: Config) -> None:
    """A valid Order goes to its exact route and the glob route, in file order."""
    outcome = decide(make_envelope(GOOD, type="Order"), shop)

    assert isinstance(outcome, Forward)
    assert outcome.message.body == GOOD
    assert outcome.copies == (Copy("order", "orders", "order.created"),
                              Copy("audit-orders", "audit", "Order"))


def test_when_adds_a_route(shop: Config) -> None:
    """A bulk order also goes to the conditional route."""
    outcome = decide(make_envelope({**GOOD, "quantity": 500}, type="Order"), shop)

    assert isinstance(outcome, Forward)
    assert [c.route for c in outcome.copies] == ["order", "bulk", "audit-orders"]


def test_type_from_routing_key_is_routed(shop: Config) -> None:
    """A message without a type property is routed by its routing key."""
    outcome = decide(make_envelope(GOOD, routing_key="Order"), shop)

    assert isinstance(outcome, Forward)


@pytest.mark.parametrize(
    ("body", "props", "reason"),
    [
        (b"{not json", {"type": "Order"}, Reason.MALFORMED),
        (f'{{"order_id": "{UUID}", "quantity": -5, "quantity": 5}}'.encode(), {"type": "Order"},
         Reason.MALFORMED),
        (GOOD, {"type": "Order", "content_type": "text/plain"}, Reason.MALFORMED),
        (GOOD, {"type": "Order", "headers": {"x-schema-version": "abc"}}, Reason.MALFORMED),
        (GOOD, {}, Reason.UNKNOWN_TYPE),
        (GOOD, {"type": "Nobody"}, Reason.UNKNOWN_TYPE),
        ({"order_id": "x", "quantity": 2}, {"type": "Order"}, Reason.SCHEMA_INVALID),
        (GOOD, {"type": "Order", "headers": {"x-schema-version": 7}}, Reason.SCHEMA_INVALID),
        ({}, {"type": "Orphan"}, Reason.UNROUTABLE),
        ({}, {"type": "Lonely", "user_id": "someone"}, Reason.UNROUTABLE),
    ],
)
def test_undeliverable_messages_are_dead_lettered(
    shop: Config, body: Any, props: dict[str, Any], reason: Reason
) -> None:
    """Each kind of bad input becomes a dead letter with the right reason, never an exception."""
    outcome = decide(make_envelope(body, **props), shop)

    assert isinstance(outcome, DeadLetter)
    assert outcome.reason is reason


def test_a_big_integer_is_validated_and_routed_exactly(shop: Config) -> None:
    """``quantity`` of 2**64 + 1 is read exactly: valid, and the bulk route's ``when`` sees it."""
    body = f'{{"order_id": "{UUID}", "quantity": 18446744073709551617}}'.encode()

    outcome = decide(make_envelope(body, type="Order"), shop)

    assert isinstance(outcome, Forward)
    assert outcome.message.body["quantity"] == 18446744073709551617
    assert [c.route for c in outcome.copies] == ["order", "bulk", "audit-orders"]


def test_no_route_matched_is_unroutable_and_says_so(shop: Config) -> None:
    """A valid message that no route takes is unroutable, naming its type."""
    outcome = decide(make_envelope({}, type="Orphan"), shop)

    assert outcome == DeadLetter(Reason.UNROUTABLE, "no route matches message type 'Orphan'",
                                 "Orphan")


def test_schema_invalid_dead_letter_names_pointer_and_keyword(shop: Config) -> None:
    """A failing body's dead letter says where and why it failed."""
    outcome = decide(make_envelope({"order_id": UUID, "quantity": 0}, type="Order"), shop)

    assert isinstance(outcome, DeadLetter)
    assert outcome.error == "Order v1: /quantity: minimum: 0 is less than the minimum of 1"
    assert outcome.message_type == "Order"


def test_decide_is_deterministic(shop: Config) -> None:
    """The same input always gives the same decision."""
    env = make_envelope({**GOOD, "quantity": 100}, type="Order")

    first, second = decide(env, shop), decide(env, shop)

    assert first == second


def test_a_delivery_with_defective_properties_is_malformed_before_anything_else(
        shop: Config) -> None:
    """Properties that did not decode or cannot be sent on make the message malformed."""
    envelope = replace(make_envelope(GOOD, type="Order"),
                       defects=("property timestamp does not decode", "header 'x' is nested"))

    outcome = decide(envelope, shop)

    assert outcome == DeadLetter(Reason.MALFORMED, "property timestamp does not decode; "
                                 "header 'x' is nested", "Order")
