"""Alternatives and shadows through the pure pipeline: canaries, retries, reloads, headers."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from router.config.configuration import Config
from router.core.choose import LoadView, QueueLoad
from router.core.ladder import RetryState, restore, retry_state_of
from router.core.outbound import copy_properties, retry_properties
from router.core.outcome import Copy, DeadCopy, Forward
from router.core.pipeline import decide
from tests.unit.conftest import LoadConfig, make_envelope
from tests.unit.test_route_versions import SCHEMAS, V1, V2

ALTERNATIVES = [{"exchange": "orders", "routing_key": "stable", "share": 90},
                {"exchange": "orders", "routing_key": "canary", "share": 10, "version": 2,
                 "name": "canary"}]


def topology(**route: Any) -> dict[str, Any]:
    return {
        "exchanges": [{"name": "orders", "type": "topic"}],
        "queues": [{"name": "q.stable", "type": "quorum"}, {"name": "q.canary", "type": "quorum"}],
        "bindings": [{"exchange": "orders", "queue": "q.stable", "routing_key": "stable"},
                     {"exchange": "orders", "queue": "q.canary", "routing_key": "canary"}],
        "routes": [{"name": "billing", "message_type": "Order", **route}],
    }


@pytest.fixture
def canary(config: LoadConfig) -> Config:
    """Billing: 90 % as published to 'stable', 10 % upcast to v2 for the canary consumer."""
    return config(topology=topology(strategy="weighted", alternatives=ALTERNATIVES),
                  schemas=SCHEMAS)


def v1(message_id: str) -> Any:
    return make_envelope({"amount": 5}, type="Order", message_id=message_id,
                         headers={"x-schema-version": 1})


def forward(outcome: object) -> Forward:
    assert isinstance(outcome, Forward), outcome
    return outcome


def test_the_canary_gets_its_share_upcast_to_its_version(canary: Config) -> None:
    """About 10 % of v1 messages go to the canary as v2; the rest go as published."""
    copies = [forward(decide(v1(f"id-{i}"), canary)).copies for i in range(1000)]

    taken = Counter(c.branch for [c] in copies)
    upcast = [c for [c] in copies if c.branch == "canary"]
    assert 60 < taken["canary"] < 140
    assert all(json.loads(c.body or b"") == {"total": 5, "currency": "EUR"} and c.version == 2
               for c in upcast)
    assert all(c.body is None and c.version is None for [c] in copies if c.branch != "canary")


def test_a_message_the_canary_cannot_take_is_dead_lettered_only_when_chosen(
        config: LoadConfig) -> None:
    """Without an upcaster the canary's v2 is out of reach: messages for the stable branch
    are still routed, those for the canary have that copy dead-lettered (its own only)."""
    loaded = config(topology=topology(strategy="weighted", alternatives=ALTERNATIVES),
                    schemas={**SCHEMAS, "Order/evolution.yaml": "upcasters:\n  - from: 1\n"
                             "    steps: [{move: {from: a.b, to: c}}, {drop: amount}]\n"})
    outcomes = [decide(v1(f"id-{i}"), loaded) for i in range(300)]

    routed = [o for o in outcomes if isinstance(o, Forward)]
    assert len(routed) == len(outcomes)
    dead = [d for o in routed for d in o.unfit]
    assert dead
    assert all(d.destination is not None and d.destination.branch == "canary" for d in dead)
    assert all(c.branch != "canary" for o in routed for c in o.copies)


def test_a_retried_copy_keeps_the_branch_it_took(canary: Config) -> None:
    """A copy parked for retry comes back to the same alternative, whatever the draw says."""
    for i in range(50):
        for branch in ("stable", "canary"):
            state = RetryState("billing", "orders", branch, 2, 1, "nack", "mcp.ingress", "", None)
            [copy] = forward(decide(v1(f"id-{i}"), canary, state)).copies
            assert copy.routing_key == branch


def test_a_retried_copy_whose_branch_was_removed_takes_todays_choice(config: LoadConfig) -> None:
    """After a reload removed its branch the copy is not lost: the route picks again."""
    loaded = config(topology=topology(strategy="weighted", alternatives=[
        {"exchange": "orders", "routing_key": "stable"},
        {"exchange": "orders", "routing_key": "next"}]), schemas=SCHEMAS)
    state = RetryState("billing", "orders", "canary", 2, 1, "nack", "mcp.ingress", "", None,
                       branch="canary")

    [copy] = forward(decide(v1("id-1"), loaded, state)).copies

    assert copy.routing_key in {"stable", "next"}


def test_a_retried_fan_out_copy_whose_destination_was_removed_is_not_rechosen(
        config: LoadConfig) -> None:
    """A ``to`` copy (no branch) whose destination is gone is unroutable, as before: it is
    never handed to an alternative, which already had its own copy."""
    loaded = config(topology=topology(to=[{"exchange": "orders", "routing_key": "audit"}],
                                      strategy="weighted", alternatives=ALTERNATIVES),
                    schemas=SCHEMAS)
    state = RetryState("billing", "orders", "old-audit", 2, 1, "nack", "mcp.ingress", "", None)

    outcome = decide(v1("id-1"), loaded, state)

    assert isinstance(outcome, DeadCopy)  # that copy alone: its route is named
    assert "no longer sends this message" in outcome.error


def test_the_branch_travels_through_the_retry_tier() -> None:
    """A parked copy's branch comes back in x-mcp-retry-branch, and is gone on delivery."""
    state = RetryState("billing", "orders", "canary", 2, 1, "nack", "mcp.ingress", "k", "svc",
                       branch="canary")
    parked = retry_properties(make_envelope({}, type="Order"), state, {}, "router")
    envelope = make_envelope({}, type="Order", user_id="router", headers=parked.headers)

    back = retry_state_of(envelope, "router")

    assert back == state
    assert "x-mcp-retry-branch" not in restore(envelope, state).properties.headers


def test_a_shadow_that_cannot_have_its_version_is_dropped_not_the_message(
        config: LoadConfig) -> None:
    """A shadow asking for a version out of reach loses its copy; the real copy goes."""
    loaded = config(topology=topology(
        to=[{"exchange": "orders", "routing_key": "stable"}],
        shadow=[{"exchange": "orders", "routing_key": "next", "version": 2}]),
        schemas={"Order/v1.json": V1, "Order/v2.json": V2,
                 "Order/evolution.yaml": "upcasters:\n  - from: 1\n    steps: [{drop: amount}]\n"})

    outcome = forward(decide(v1("id-1"), loaded))

    assert [c.routing_key for c in outcome.copies] == ["stable"]
    [(dropped, why)] = outcome.dropped
    assert dropped.shadow
    assert "the upcast from v1 is not valid" in why


def test_least_loaded_follows_the_view(config: LoadConfig) -> None:
    """The pipeline hands the view to least_loaded: the emptier queue per consumer wins."""
    loaded = config(topology=topology(strategy="least_loaded", alternatives=[
        {"exchange": "orders", "routing_key": "stable"},
        {"exchange": "orders", "routing_key": "canary"}]), schemas=SCHEMAS)
    view = LoadView({"q.stable": QueueLoad(100, 1), "q.canary": QueueLoad(3, 1)})

    [copy] = forward(decide(v1("id-1"), loaded, view=view)).copies

    assert copy.routing_key == "canary"


def test_a_key_that_cannot_be_read_falls_back_to_the_message_id(config: LoadConfig) -> None:
    """A sticky key missing from the message: still routed, marked keyless."""
    alternatives = [*ALTERNATIVES[:1], {"exchange": "orders", "routing_key": "next", "share": 10}]
    loaded = config(topology=topology(strategy="weighted", key="message.customer",
                                      alternatives=alternatives), schemas=SCHEMAS)

    [copy] = forward(decide(v1("id-1"), loaded)).copies

    assert copy.keyless


def test_branch_and_shadow_copies_say_so_in_their_headers() -> None:
    """x-mcp-branch names the alternative or shadow; x-mcp-shadow marks a shadow copy."""
    envelope = make_envelope({}, type="Order")

    chosen = copy_properties(envelope, Copy("r", "orders", "k", branch="canary"), {})
    shadow = copy_properties(envelope, Copy("r", "orders", "k", branch="next", shadow=True), {})
    plain = copy_properties(envelope, Copy("r", "orders", "k"), {})

    assert chosen.headers["x-mcp-branch"] == "canary"
    assert "x-mcp-shadow" not in chosen.headers
    assert shadow.headers["x-mcp-shadow"] is True
    assert "x-mcp-branch" not in plain.headers
