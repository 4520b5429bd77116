"""Routes that ask for a schema version: checked at load, upcast by the pure pipeline."""

from __future__ import annotations

import json
from textwrap import dedent
from typing import Any

import pytest

from router.config.configuration import Config
from router.core.ladder import RetryState
from router.core.outbound import copy_properties
from router.core.outcome import Copy, DeadLetter, Forward, Reason
from router.core.pipeline import decide
from tests.unit.conftest import Check, LoadConfig, make_envelope
from tests.unit.test_compat import NUMBER, STRING, obj

V1 = obj({"amount": NUMBER}, ("amount",))
V2 = obj({"total": NUMBER, "currency": STRING}, ("total", "currency"))
V3 = obj({"total": NUMBER, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}},
         ("total", "currency"))
EVOLUTION = dedent("""\
    compatibility: backward
    upcasters:
      - from: 1
        steps:
          - rename: {from: amount, to: total}
          - default: {field: currency, value: EUR}
    """)
SCHEMAS: dict[str, Any] = {"Order/v1.json": V1, "Order/v2.json": V2,
                           "Order/evolution.yaml": EVOLUTION}


def topology(*routes: dict[str, Any]) -> dict[str, Any]:
    return {"exchanges": [{"name": "orders", "type": "topic"}], "routes": list(routes)}


def route(name: str, version: int | None = None, message_type: str = "Order") -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "message_type": message_type,
                            "to": [{"exchange": "orders", "routing_key": name}]}
    if version is not None:
        spec["version"] = version
    return spec


@pytest.fixture
def shop(config: LoadConfig) -> Config:
    """Order v1/v2 with an upcaster; billing asks for v2, audit takes what is published."""
    return config(topology=topology(route("billing", 2), route("audit")), schemas=SCHEMAS)


def test_old_message_is_upcast_for_the_route_that_asks_for_a_version(shop: Config) -> None:
    """A v1 order reaches billing as v2 (own body, version 2) and audit untouched."""
    outcome = decide(make_envelope({"amount": 5}, type="Order",
                                   headers={"x-schema-version": 1}), shop)

    assert isinstance(outcome, Forward)
    billing, audit = outcome.copies
    assert (billing.route, billing.version) == ("billing", 2)
    assert json.loads(billing.body or b"") == {"total": 5, "currency": "EUR"}
    assert audit == Copy("audit", "orders", "audit")


def test_message_already_in_the_version_keeps_its_bytes(shop: Config) -> None:
    """No header means the newest version: nothing to upcast, no re-serialisation."""
    outcome = decide(make_envelope({"total": 5, "currency": "USD"}, type="Order"), shop)

    assert isinstance(outcome, Forward)
    assert outcome.copies[0] == Copy("billing", "orders", "billing", 2, None)


def _unfit(outcome: object) -> DeadLetter:
    """The one copy dead-lettered on its own in a forward."""
    assert isinstance(outcome, Forward)
    [dead] = outcome.unfit
    return dead


def test_message_newer_than_the_route_is_dead_lettered(config: LoadConfig) -> None:
    """The router never downcasts: a v2 message for a route that asks v1 dead-letters that
    route's copy only; the other route still gets its copy."""
    shop = config(topology=topology(route("legacy", 1), route("audit")), schemas=SCHEMAS)

    outcome = decide(make_envelope({"total": 5, "currency": "USD"}, type="Order"), shop)

    dead = _unfit(outcome)
    assert (dead.reason, dead.error, dead.message_type, dead.route) == (
        Reason.SCHEMA_INVALID, "route 'legacy' asks for Order v1 but the message is v2: the "
        "router does not downcast", "Order", "legacy")
    assert dead.destination is not None
    assert dead.destination.route == "legacy"
    assert isinstance(outcome, Forward)
    assert [c.route for c in outcome.copies] == ["audit"]


def test_upcast_that_gives_an_invalid_message_is_dead_lettered(config: LoadConfig) -> None:
    """The upcast is validated against the route's version; the error names the upcast."""
    shop = config(topology=topology(route("billing", 3)),
                  schemas={**SCHEMAS, "Order/v3.json": V3,
                           "Order/evolution.yaml": EVOLUTION.replace("backward", "none")
                           + "  - from: 2\n    steps: []\n"})

    outcome = _unfit(decide(make_envelope({"total": 5, "currency": "usd"}, type="Order",
                                          headers={"x-schema-version": 2}), shop))

    assert outcome.reason is Reason.SCHEMA_INVALID
    assert outcome.error.startswith("route 'billing' asks for Order v3: the upcast from v2 is "
                                    "not valid: Order v3: /currency: pattern:")


def test_upcast_step_that_fails_is_dead_lettered(config: LoadConfig) -> None:
    """A move below a field that is not an object fails the upcast, named with its step."""
    evolution = "upcasters:\n  - from: 1\n    steps: [{move: {from: meta.id, to: id}}]\n"
    shop = config(topology=topology(route("billing", 2)),
                  schemas={"Order/v1.json": {"type": "object"}, "Order/v2.json": V2,
                           "Order/evolution.yaml": evolution})

    outcome = _unfit(decide(make_envelope({"meta": "x"}, type="Order",
                                          headers={"x-schema-version": 1}), shop))

    assert (outcome.reason, outcome.error, outcome.route) == (
        Reason.SCHEMA_INVALID, "route 'billing' asks for Order v2: upcast v1->v2: move meta.id "
        "-> id: meta is not an object", "billing")


def test_retried_copy_is_upcast_again(shop: Config) -> None:
    """A copy back from the retry tier is matched by route and destination, then upcast."""
    state = RetryState("billing", "orders", "billing", 3, 1, "nack", "mcp.ingress", "", None)
    envelope = make_envelope({"amount": 5}, type="Order", headers={"x-schema-version": 1})

    outcome = decide(envelope, shop, state)

    assert isinstance(outcome, Forward)
    [copy] = outcome.copies
    assert copy.version == 2
    assert json.loads(copy.body or b"") == {"total": 5, "currency": "EUR"}


def test_copy_properties_say_the_copy_version() -> None:
    """x-schema-version on a versioned copy is its route's version."""
    envelope = make_envelope({}, type="Order", headers={"x-schema-version": 1})

    props = copy_properties(envelope, Copy("billing", "orders", "k", 2, b"{}"), {})
    plain = copy_properties(envelope, Copy("audit", "orders", "k"), {})

    assert props.headers["x-schema-version"] == 2
    assert plain.headers["x-schema-version"] == 1


@pytest.mark.parametrize(("routes", "schemas", "expected"), [
    ([route("billing", 7)], SCHEMAS,
     "topology.yaml:5: route 'billing': Order has no schema version 7 (known: 1, 2)"),
    ([route("billing", 1, "Ord*")], SCHEMAS,
     "topology.yaml:5: route 'billing': 'version' needs an exact message_type, not 'Ord*'"),
    ([route("billing", 0)], SCHEMAS,
     "topology.yaml:10: 'version' must be a schema version (1 or more), got 0"),
    ([route("billing", 2)], {**SCHEMAS, "Order/evolution.yaml": "compatibility: none\n"},
     "topology.yaml:5: route 'billing' asks for Order v2, but v1 messages have no upcaster "
     "towards it: declare one in schemas/Order/evolution.yaml (steps may be empty) or make "
     "its compatibility backward so that check proves the step"),
])
def test_route_version_is_checked(check: Check, routes: list[dict[str, Any]],
                                  schemas: dict[str, Any], expected: str) -> None:
    """A route's version must exist, need an exact type, and be reachable from older ones."""
    assert check(topology=topology(*routes), schemas=schemas) == [expected]


def test_forward_mode_route_version_accepts_a_declared_upcaster(check: Check) -> None:
    """Without a backward mode, a declared upcaster (even with no steps) is the way up."""
    schemas = {**SCHEMAS, "Order/evolution.yaml": "compatibility: none\nupcasters:\n"
                                                  "  - {from: 1, steps: []}\n"}

    assert check(topology=topology(route("billing", 2)), schemas=schemas) == []
