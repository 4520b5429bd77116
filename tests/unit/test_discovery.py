"""Discovery: announcements parsed from the wire, the live registry, unconsumed routes."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from router.config.topology import Binding, Destination, Exchange, Queue, RouteSpec, Topology
from router.config.unconsumed_rules import unconsumed_rule
from router.discovery.registry import (
    Announcement,
    Handles,
    ServiceRegistry,
    parse_announcement,
    unconsumed_routes,
)
from tests.unit.conftest import Check, LoadConfig

STARTED = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def announcement(instance: str = "billing-1", queues: tuple[str, ...] = ("billing",),
                 handles: tuple[Handles, ...] = (Handles("OrderCreated", (1, 2)),),
                 heartbeat: float = 5.0) -> Announcement:
    return Announcement("billing", instance, queues, handles, heartbeat, "mcp-router 0.1.0",
                        STARTED)


def test_an_announcement_round_trips_through_its_wire_form() -> None:
    """What the SDK encodes, the router parses back to the same value."""
    sent = announcement()

    assert parse_announcement(sent.encode()) == sent


@pytest.mark.parametrize(("body", "why"), [
    (b"[1]", "announcement is not a JSON object"),
    (b"{", "not an announcement"),
    (b'{"instance": "i", "queues": []}', "name must be a non-empty string"),
    (b'{"name": "a", "instance": "i", "heartbeat": 0}', "heartbeat must be a number"),
    (b'{"name": "a", "instance": "i", "handles": [{"type": "T", "versions": ["2"]}]}',
     "versions must be a list of positive integers"),
    (b"x" * 70000, "over 65536"),
])
def test_garbage_on_the_control_exchange_is_refused_with_a_reason(body: bytes, why: str) -> None:
    """Anyone can publish there: bad bodies are refused, never trusted or raised."""
    result = parse_announcement(body)

    assert isinstance(result, str)
    assert why in result


def test_instances_expire_after_three_silent_heartbeats() -> None:
    """A heartbeat keeps an instance live; three missed ones forget it; goodbye at once."""
    registry = ServiceRegistry()
    assert registry.announce(announcement("a", heartbeat=1.0), 0.0)
    assert not registry.announce(announcement("a", heartbeat=1.0), 2.0)
    registry.announce(announcement("b", heartbeat=1.0), 2.0)

    assert registry.expire(4.9) == []
    assert [a.instance for a in registry.expire(5.0)] == ["a", "b"]
    registry.announce(announcement("c"), 6.0)
    assert registry.goodbye("c") is not None
    assert registry.live() == []


def test_listing_says_when_each_instance_was_last_heard() -> None:
    """``/services`` shows the announcement plus last-seen and expiry times."""
    registry = ServiceRegistry()
    registry.announce(announcement(heartbeat=2.0), 10.0)

    [item] = registry.listing(11.5)

    assert item["name"] == "billing"
    assert item["handles"] == [{"type": "OrderCreated", "versions": [1, 2]}]
    assert (item["last_seen_seconds_ago"], item["expires_in_seconds"]) == (1.5, 4.5)


TOPOLOGY = Topology(
    exchanges=(Exchange("orders", "topic"), Exchange("audit", "fanout")),
    queues=(Queue("billing"), Queue("review"), Queue("log", "stream")),
    bindings=(Binding("orders", "billing", "order.*"), Binding("orders", "review", "order.review"),
              Binding("audit", "log")),
    routes=(RouteSpec("created", "OrderCreated", (Destination("orders", "order.created"),)),
            RouteSpec("updated", "OrderUpdated", (Destination("orders", "order.updated"),)),
            RouteSpec("review", "OrderCreated", (Destination("orders", "order.review"),)),
            RouteSpec("audit", "*", (Destination("audit"),)),
            RouteSpec("nowhere", "OrderCreated", (Destination("orders", "x.y"),))),
)


def test_a_route_is_consumed_when_a_live_service_reads_its_queue_and_handles_its_type() -> None:
    """billing handles OrderCreated from billing: those routes are consumed (order.review
    reaches billing too), OrderUpdated to the same queue is not, audit has no reader; a
    route reaching no queue is not this check's business."""
    found = unconsumed_routes(TOPOLOGY, [announcement()])

    assert found == {
        "updated": "no live service handles OrderUpdated from billing",
        "audit": "no live service handles * from log",
    }


def test_a_catch_all_route_is_consumed_by_anyone_reading_its_queue() -> None:
    """A ``*`` route counts as consumed by any live reader of a queue it reaches."""
    reader = announcement("auditor", queues=("log",), handles=(Handles("Anything"),))

    assert "audit" not in unconsumed_routes(TOPOLOGY, [reader])


def test_unconsumed_policy_loads_first_match_wins(config: LoadConfig) -> None:
    """Rules by message type; wait adds its retry queue; defaults: deliver, 10 s, 15 s."""
    loaded = config(policies={"d.yaml": {"unconsumed": [
        {"match": "Payment*", "action": "wait", "wait": "2s", "grace": "1s"},
        {"match": "*"}]}})

    rule = unconsumed_rule(loaded.policies.unconsumed, "PaymentCaptured")
    other = unconsumed_rule(loaded.policies.unconsumed, "OrderCreated")

    assert rule is not None
    assert (rule.action, rule.wait, rule.grace) == ("wait", 2.0, 1.0)
    assert other is not None
    assert (other.action, other.wait, other.grace) == ("deliver", 10.0, 15.0)
    assert "mcp.router.ingress.retry.2000ms" in {q.name for q in loaded.retry_queues()}


def test_bad_unconsumed_rules_are_located(check: Check) -> None:
    """A wrong action or duration is reported with file and line."""
    text = "unconsumed:\n  - {match: '*', action: drop}\n  - {match: '*', wait: later}\n"

    assert check(policies={"d.yaml": text}) == [
        "policies/d.yaml:2: 'action' must be one of wait, dead_letter, deliver, got 'drop'",
        "policies/d.yaml:3: wait must be a duration such as 500ms, 10s or 1m",
    ]


def test_announcement_body_is_the_protocol_json() -> None:
    """The wire form has the protocol's keys, ``queue`` being the first of ``queues``."""
    body = orjson.loads(announcement(queues=("a", "b")).encode())

    assert body["queue"] == "a"
    assert body["queues"] == ["a", "b"]
    assert body["started"] == "2026-11-25T09:00:00Z"
