"""``check`` on route alternatives and shadows: every problem as FILE:LINE: message."""

from __future__ import annotations

from textwrap import dedent

import pytest

from router.config.alternatives import plan_lines
from router.config.branches import Strategy
from tests.unit.conftest import ORDER_SCHEMA, Check, LoadConfig

SCHEMAS = {"Order/v1.json": ORDER_SCHEMA, "Order/v2.json": ORDER_SCHEMA,
           "Order/evolution.yaml": "upcasters: [{from: 1, steps: []}]\n"}
HEAD = """\
exchanges:
  - {name: orders, type: topic}
queues:
  - {name: a, type: quorum}
  - {name: b, type: quorum}
  - {name: log, type: stream}
bindings:
  - {exchange: orders, queue: a, routing_key: to.a}
  - {exchange: orders, queue: b, routing_key: to.b}
  - {exchange: orders, queue: log, routing_key: to.log}
routes:
  - name: split
    message_type: Order
"""  # the route starts on line 12, its own keys on line 14


# Weighted alternatives with shares, a key, a versioned canary and a shadow.
WEIGHTED_WITH_SHADOW = """\
    strategy: weighted
    key: message.order_id
    alternatives:
      - {exchange: orders, routing_key: to.a, share: 90}
      - {exchange: orders, routing_key: to.b, share: 10, version: 2, name: canary}
    shadow:
      - {exchange: orders, routing_key: to.log, share: 5}
    """


def topology(body: str) -> str:
    return HEAD + dedent(body).replace("\n", "\n    ").join(["    ", ""]).rstrip(" ")


def test_a_valid_choice_with_shadow_passes_check(check: Check) -> None:
    """Weighted alternatives with shares, a key, a versioned canary and a shadow check clean."""
    problems = check(topology=topology(WEIGHTED_WITH_SHADOW), schemas=SCHEMAS,
                     policies={"e.yaml": {}})

    assert problems == []


@pytest.mark.parametrize(("body", "expected"), [
    ("""\
        strategy: random
        alternatives: [{exchange: orders, routing_key: to.a}, {exchange: orders, routing_key: to.b}]
        """, "topology.yaml:14: 'strategy' must be one of least_loaded, weighted, hash, "
             "got 'random'"),
    ("""\
        strategy: weighted
        alternatives:
          - {exchange: orders, routing_key: to.a, share: 90}
          - {exchange: orders, routing_key: to.b, share: 20}
        """, "topology.yaml:16: the shares are percentages and must add up to 100; these add "
             "up to 110"),
    ("""\
        strategy: weighted
        alternatives:
          - {exchange: orders, routing_key: to.a, share: 90}
          - {exchange: orders, routing_key: to.b}
        """, "topology.yaml:17: give every alternative a 'share', or none (equal shares)"),
    ("""\
        strategy: weighted
        alternatives:
          - {exchange: orders, routing_key: to.a, share: 120}
          - {exchange: orders, routing_key: to.b, share: -20}
        """, "topology.yaml:16: 'share' is a percentage from 0 to 100, got 120"),
    ("""\
        strategy: hash
        key: message.order_id
        alternatives:
          - {exchange: orders, routing_key: to.a, share: 50}
          - {exchange: orders, routing_key: to.b, share: 50}
        """, "topology.yaml:17: 'share' needs strategy weighted (hash decides by itself)"),
    ("""\
        strategy: hash
        alternatives: [{exchange: orders, routing_key: to.a}, {exchange: orders, routing_key: to.b}]
        """, "topology.yaml:12: strategy hash needs a 'key' (a CEL expression, such as "
             "message.customer_id)"),
    ("""\
        strategy: least_loaded
        key: message.order_id
        alternatives: [{exchange: orders, routing_key: to.a}, {exchange: orders, routing_key: to.b}]
        """, "topology.yaml:15: 'key' means nothing to least_loaded, which decides by queue "
             "depth"),
    ("""\
        strategy: weighted
        check_every: 2s
        alternatives: [{exchange: orders, routing_key: to.a}, {exchange: orders, routing_key: to.b}]
        """, "topology.yaml:15: 'check_every' needs strategy least_loaded"),
    ("""\
        strategy: least_loaded
        check_every: forever
        alternatives: [{exchange: orders, routing_key: to.a}, {exchange: orders, routing_key: to.b}]
        """, "topology.yaml:15: check_every must be a duration such as 500ms or 2s (from 0.05s "
             "to 3600s)"),
    ("""\
        strategy: weighted
        alternatives: [{exchange: orders, routing_key: to.a}]
        """, "topology.yaml:15: 'alternatives' needs at least two destinations (a single one "
             "belongs in 'to')"),
    ("""\
        alternatives: [{exchange: orders, routing_key: to.a}, {exchange: orders, routing_key: to.b}]
        """, "topology.yaml:14: 'alternatives' needs a 'strategy': least_loaded, weighted, hash"),
    ("""\
        strategy: weighted
        to: [{exchange: orders, routing_key: to.a}]
        """, "topology.yaml:14: 'strategy' needs 'alternatives' (the destinations to choose "
             "among)"),
    ("""\
        strategy: weighted
        alternatives: [{exchange: orders, routing_key: to.a}, {exchange: orders, routing_key: to.a}]
        """, "topology.yaml:15: alternative 'orders/to.a' repeats alternative 1: each "
             "destination once"),
    ("""\
        strategy: weighted
        alternatives: [{exchange: orders, routing_key: to.a}, {exchange: nowhere, routing_key: x}]
        """, "topology.yaml:15: route 'split' sends to undeclared exchange 'nowhere'"),
    ("""\
        strategy: least_loaded
        alternatives:
          - {exchange: orders, routing_key: to.a}
          - {exchange: orders, routing_key: to.log}
        """, "topology.yaml:17: route 'split': alternative 'orders/to.log' reaches no queue "
             "(streams are not counted), so least_loaded cannot weigh it"),
    ("""\
        strategy: weighted
        alternatives:
          - {exchange: orders, routing_key: to.a}
          - {exchange: orders, routing_key: to.b, version: 7}
        """, "topology.yaml:17: route 'split': Order has no schema version 7 (known: 1, 2)"),
    ("""\
        to: [{exchange: orders, routing_key: to.a}]
        shadow: [{exchange: orders, routing_key: to.a}]
        """, "topology.yaml:15: route 'split': shadow 'orders/to.a' is also a real "
             "destination of the route"),
    ("""\
        to: [{exchange: orders, routing_key: to.a}]
        shadow: [{exchange: orders, routing_key: to.b, mirror: true}]
        """, "topology.yaml:15: unknown key 'mirror' in shadow (known: exchange, name, "
             "routing_key, share, version)"),
])
def test_check_reports_a_bad_choice_at_its_line(check: Check, body: str, expected: str) -> None:
    """Each mistake in alternatives or shadows is one problem at its line."""
    problems = check(topology=topology(body), schemas=SCHEMAS)

    assert expected in problems, problems


@pytest.mark.parametrize(("key", "expected"), [
    ("message.order_id +", "topology.yaml:15: route 'split' key: CEL syntax error"),
    ("customer.id", "topology.yaml:15: route 'split' key: unknown variable 'customer'"),
])
def test_a_bad_cel_key_is_reported_at_the_key_line(check: Check, key: str, expected: str) -> None:
    """A key that does not compile, or reads an unknown variable, names the key's line."""
    problems = check(topology=topology(f"""\
        strategy: hash
        key: '{key}'
        alternatives:
          - {{exchange: orders, routing_key: to.a}}
          - {{exchange: orders, routing_key: to.b}}
        """), schemas=SCHEMAS)

    assert any(p.startswith(expected) for p in problems), problems


def test_a_route_with_only_alternatives_needs_no_to(config: LoadConfig) -> None:
    """``to`` may be left out when the route has alternatives."""
    loaded = config(topology=topology("""\
        strategy: least_loaded
        check_every: 250ms
        alternatives: [{exchange: orders, routing_key: to.a}, {exchange: orders, routing_key: to.b}]
        """), schemas=SCHEMAS)

    [route] = loaded.topology.routes
    assert route.to == ()
    assert route.choice is not None
    assert route.choice.strategy is Strategy.LEAST_LOADED
    assert route.choice.check_every == 0.25
    assert loaded.router.load_aware
    assert loaded.router.branching


def test_plan_lines_show_alternatives_shadows_and_shares(config: LoadConfig) -> None:
    """``plan`` names each branch, its share, its version and the shadows."""
    loaded = config(topology=topology(WEIGHTED_WITH_SHADOW), schemas=SCHEMAS)

    assert plan_lines(loaded.topology) == [
        "route split: one of 2 alternatives, weighted by message.order_id",
        "  alternative orders/to.a 90 %",
        "  alternative canary: orders/to.b 10 % as v2",
        "  shadow orders/to.log 5 % of messages",
    ]


def test_least_loaded_on_a_glob_route_with_routing_keys_watches_its_queues(
        config: LoadConfig) -> None:
    """A glob message_type is fine when every alternative names its routing key."""
    text = topology("""\
        strategy: least_loaded
        alternatives: [{exchange: orders, routing_key: to.a}, {exchange: orders, routing_key: to.b}]
        """).replace("message_type: Order\n", "message_type: 'Ord*'\n")
    loaded = config(topology=text, schemas=SCHEMAS)

    [route] = loaded.router.routes
    assert route.alternatives is not None
    assert route.alternatives.queues == (("a",), ("b",))
    assert loaded.router.load_aware
