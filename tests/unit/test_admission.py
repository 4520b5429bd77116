"""The policy stage: authorization, input limits and copy priority (pure)."""

from __future__ import annotations

import pytest

from router.config.admission_rules import Authorization, AuthRule, LimitRule, PriorityRule
from router.core.admission import admit, copy_overrides
from router.core.outcome import Reason
from tests.unit.conftest import Check, make_envelope

AUTH = Authorization("deny", (AuthRule("Payment*", ("payments",), "policies/a.yaml:4"),
                              AuthRule("Order*", ("*",), "policies/a.yaml:6"),
                              AuthRule("Ping", ("**",), "policies/a.yaml:8")),
                     "policies/a.yaml:2")


@pytest.mark.parametrize(("message_type", "user", "allowed"), [
    ("PaymentCaptured", "payments", True),
    ("PaymentCaptured", "shop", False),
    ("PaymentCaptured", None, False),
    ("OrderCreated", "shop", True),
    ("OrderCreated", None, False),  # "*" is any *known* publisher
    ("Ping", None, True),  # "**" is anyone at all
    ("Other", "payments", False),  # no rule: the default (deny)
])
def test_authorization_by_type_and_publisher(message_type: str, user: str | None,
                                             allowed: bool) -> None:
    """The first matching rule decides on the broker-validated user_id; else the default."""
    envelope = make_envelope({}, type=message_type, user_id=user)

    refused = admit(envelope, message_type, AUTH, ())

    assert (refused is None) == allowed
    if refused is not None:
        assert refused.reason is Reason.UNAUTHORIZED


def test_refusal_names_the_rule_that_refused() -> None:
    """The dead letter's error says who, what, and which rule (file and line)."""
    refused = admit(make_envelope({}, type="PaymentCaptured", user_id="shop"),
                    "PaymentCaptured", AUTH, ())

    assert refused is not None
    assert refused.error == ("publisher 'shop' may not publish PaymentCaptured: rule "
                             "'Payment*' at policies/a.yaml:4 allows payments")


def test_default_deny_names_its_place() -> None:
    """Without a matching rule the default decides, and the error says where it is set."""
    refused = admit(make_envelope({}, type="X"), "X", AUTH, ())

    assert refused is not None
    assert "an unknown publisher (no user_id) may not publish X" in refused.error
    assert "policies/a.yaml:2 is deny" in refused.error


LIMITS = (LimitRule("*", max_body_bytes=20, required_properties=("message_id",),
                    content_types=("application/json",), message_ttl=60.0),)


@pytest.mark.parametrize(("props", "body", "expected"), [
    ({"message_id": "m"}, b"x" * 21, "body of 21 bytes is over the limit of 20"),
    ({}, b"{}", "required properties missing: message_id"),
    ({"message_id": "m", "content_type": "application/xml"}, b"{}",
     "content type 'application/xml' is not allowed (allowed: application/json)"),
])
def test_input_limits_refuse_with_a_clear_reason(props: dict[str, str], body: bytes,
                                                 expected: str) -> None:
    """Each limit refuses as malformed, saying which limit."""
    refused = admit(make_envelope(body, type="T", **props), "T", Authorization(), LIMITS)

    assert refused is not None
    assert (refused.reason, refused.error) == (Reason.MALFORMED, expected)


def test_message_within_limits_passes() -> None:
    """An absent content type counts as JSON."""
    assert admit(make_envelope(b"{}", type="T", message_id="m"), "T", Authorization(),
                 LIMITS) is None


@pytest.mark.parametrize(("expiration", "expected"), [(None, "60000"), ("120000", "60000"),
                                                     ("5000", None)])
def test_message_ttl_sets_or_caps_the_expiration_of_copies(expiration: str | None,
                                                           expected: str | None) -> None:
    """Copies expire after message_ttl at most; a shorter expiration is kept."""
    changes = copy_overrides("T", LIMITS, (), expiration)

    assert changes.get("expiration") == expected


def test_priority_applies_to_copies_of_matching_types() -> None:
    """The first matching priority rule sets the AMQP priority of copies."""
    rules = (PriorityRule("Payment*", 9), PriorityRule("*", 1))

    assert copy_overrides("PaymentCaptured", (), rules, None) == {"priority": 9}
    assert copy_overrides("OrderCreated", (), rules, None) == {"priority": 1}


def test_policy_sections_are_checked_with_lines(check: Check) -> None:
    """Mistakes in authorization, limits and priority are located problems."""
    text = ("authorization:\n  default: maybe\n  rules:\n    - {match: 'A', publishers: [1]}\n"
            "limits:\n  - {match: '*', required_properties: [colour], message_ttl: soon}\n"
            "priority:\n  - {match: '*', priority: 300}\n")

    problems = check(policies={"p.yaml": text})

    assert problems == [
        "policies/p.yaml:2: 'default' must be one of allow, deny, got 'maybe'",
        "policies/p.yaml:4: publishers must be broker user names (strings)",
        "policies/p.yaml:6: unknown AMQP property 'colour' (known: content_type, "
        "content_encoding, delivery_mode, priority, correlation_id, reply_to, expiration, "
        "message_id, timestamp, type, user_id, app_id)",
        "policies/p.yaml:6: message_ttl must be a duration such as 30s or 1h",
        "policies/p.yaml:8: priority must be between 0 and 255",
    ]


def test_authorization_is_defined_once(check: Check) -> None:
    """Two files defining authorization is a problem: which default would win?"""
    problems = check(policies={"a.yaml": "authorization: {default: allow}\n",
                               "b.yaml": "authorization: {default: deny}\n"})

    assert problems == ["policies/b.yaml:1: authorization is already defined in "
                        "policies/a.yaml; keep one"]
