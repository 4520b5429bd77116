"""The plugin's pure part: every broker name of a configuration gets the test's prefix."""

from __future__ import annotations

from router.testing.plugin import prefix_policy, prefix_topology


def test_every_exchange_and_queue_is_prefixed_and_routes_keep_their_names() -> None:
    """Declared, bound and routed-to names change; route names and keys do not."""
    topology = {
        "exchanges": [{"name": "orders", "type": "topic"}],
        "queues": [{"name": "billing", "type": "quorum"}],
        "bindings": [{"exchange": "orders", "queue": "billing", "routing_key": "order.*"}],
        "routes": [{"name": "r", "message_type": "T",
                    "to": [{"exchange": "orders", "routing_key": "order.created"}]}],
    }

    out = prefix_topology(topology, "p")

    assert out["exchanges"] == [{"name": "p.orders", "type": "topic"}]
    assert out["queues"] == [{"name": "p.billing", "type": "quorum"}]
    assert out["bindings"] == [{"exchange": "p.orders", "queue": "p.billing",
                                "routing_key": "order.*"}]
    assert out["routes"] == [{"name": "r", "message_type": "T",
                              "to": [{"exchange": "p.orders", "routing_key": "order.created"}]}]
    assert topology["exchanges"] == [{"name": "orders", "type": "topic"}]  # not modified


def test_implied_ingress_and_dead_letter_names_are_prefixed_too() -> None:
    """Without ingress/dead_letter sections, their defaults are written out, prefixed."""
    out = prefix_topology(None, "p")

    assert out["ingress"] == {"exchange": "p.mcp.ingress", "queue": "p.mcp.router.ingress"}
    assert out["dead_letter"] == {"exchange": "p.mcp.dlx", "queue": "p.mcp.dead-letters"}
    assert out["control"] == {"exchange": "p.mcp.control"}  # a test's services stay its own


def test_kept_ingress_settings_and_circuit_breaker_names() -> None:
    """Other ingress keys stay; circuit breakers name prefixed exchanges and queues."""
    out = prefix_topology({"ingress": {"exchange": "in", "delivery_limit": 3}}, "p")
    policy = prefix_policy({"circuit_breakers": [{"exchange": "orders*", "queues": ["billing"],
                                                  "failures": 5}],
                            "retry": [{"match": "*"}]}, "p")

    assert out["ingress"] == {"exchange": "p.in", "delivery_limit": 3,
                              "queue": "p.mcp.router.ingress"}
    assert policy == {"circuit_breakers": [{"exchange": "p.orders*", "queues": ["p.billing"],
                                            "failures": 5}],
                      "retry": [{"match": "*"}]}


def test_alternatives_and_shadows_are_prefixed_and_a_route_may_lack_to() -> None:
    """Alternatives and shadow destinations get the prefix; a route without 'to' is fine."""
    topology = {"routes": [{"name": "r", "message_type": "T", "strategy": "hash",
                            "key": "message.id",
                            "alternatives": [{"exchange": "a", "routing_key": "k"},
                                             {"exchange": "b", "share": 10}],
                            "shadow": [{"exchange": "c", "name": "next"}]}]}

    [route] = prefix_topology(topology, "p")["routes"]

    assert "to" not in route
    assert route["alternatives"] == [{"exchange": "p.a", "routing_key": "k"},
                                     {"exchange": "p.b", "share": 10}]
    assert route["shadow"] == [{"exchange": "p.c", "name": "next"}]
    assert route["key"] == "message.id"


def test_encryption_plain_rules_on_exchanges_are_prefixed() -> None:
    """An entitled exchange is renamed with the test's prefix; a route rule is left alone."""
    policy = {"encryption": {"key": "pii", "plain": [{"exchange": "billing"},
                                                     {"route": "books"}]}}
    assert prefix_policy(policy, "p")["encryption"] == {
        "key": "pii", "plain": [{"exchange": "p.billing"}, {"route": "books"}]}
