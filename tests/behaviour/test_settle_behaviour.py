"""Settle and delivery behaviour, the same on the fake broker and on RabbitMQ."""

from __future__ import annotations

from typing import Any

from router.core.deliverysteps import Verdict
from tests.behaviour.conftest import MakeBench

SCHEMA: dict[str, Any] = {"type": "object", "required": ["n"],
                          "properties": {"n": {"type": "integer"}}}
NO_TIER = {"retry.yaml": {"retry": [{"match": "*", "attempts": 1, "delays": []}]}}
ONE_MINUTE_TIER = {"retry.yaml": {"retry": [{"match": "*", "attempts": 1,
                                              "delays": ["60s"]}]}}


def shop(*routes: dict[str, Any]) -> dict[str, Any]:
    """Exchange ``{p}.orders`` with queues billing (order.*) and audit (#); ``{p}.void`` has
    no queue bound; the routes given."""
    return {
        "exchanges": [{"name": "{p}.orders", "type": "topic"},
                      {"name": "{p}.void", "type": "topic"}],
        "queues": [{"name": "{p}.billing", "type": "quorum"},
                   {"name": "{p}.audit", "type": "quorum"}],
        "bindings": [{"exchange": "{p}.orders", "queue": "{p}.billing", "routing_key": "order.*"},
                     {"exchange": "{p}.orders", "queue": "{p}.audit", "routing_key": "#"}],
        "routes": list(routes),
    }


def to(name: str, exchange: str, key: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "message_type": "T", "to": [{"exchange": exchange,
                                                         "routing_key": key}], **more}


async def test_a_message_is_forwarded_to_every_route_and_acked(bench: MakeBench) -> None:
    """Two routes: each destination queue gets one copy naming its route; the delivery acks."""
    b = await bench(shop(to("billing", "{p}.orders", "order.new"),
                         to("audit", "{p}.orders", "log.t")), schemas={"T/v1.json": SCHEMA})
    await b.send({"n": 1}, "T")

    assert await b.route_one() is Verdict.ACK

    billing, audit = await b.messages(b.name("billing")), await b.messages(b.name("audit"))
    assert [m.properties.headers["x-mcp-route"] for m in billing] == ["billing"]
    assert sorted(m.properties.headers["x-mcp-route"] for m in audit) == ["audit", "billing"]
    assert await b.messages(b.config.topology.ingress.queue) == []


async def test_an_unroutable_copy_is_dead_lettered_alone(bench: MakeBench) -> None:
    """The copy to an exchange with no queue bound is dead-lettered per copy; the other lands."""
    b = await bench(shop(to("billing", "{p}.orders", "order.new"),
                         to("lost", "{p}.void", "x")),
                    schemas={"T/v1.json": SCHEMA}, policies=NO_TIER)
    await b.send({"n": 1}, "T")

    assert await b.route_one() is Verdict.ACK

    [dead] = await b.messages(b.dead)
    h = dead.properties.headers
    assert (h["x-mcp-reason"], h["x-mcp-route"]) == ("unroutable", "lost")
    assert h["x-mcp-destination-exchange"] == b.name("void")
    assert len(await b.messages(b.name("billing"))) == 1


async def test_a_failing_copy_is_parked_in_the_retry_tier(bench: MakeBench) -> None:
    """With a 60 s round left, the unroutable copy waits in its TTL queue with its state."""
    b = await bench(shop(to("lost", "{p}.void", "x")), schemas={"T/v1.json": SCHEMA},
                    policies=ONE_MINUTE_TIER)
    await b.send({"n": 1}, "T")

    assert await b.route_one() is Verdict.ACK

    [parked] = await b.messages(b.retry_queue(60000))
    h = parked.properties.headers
    assert (h["x-mcp-retry-route"], h["x-mcp-retries"], h["x-mcp-attempts"]) == ("lost", 1, 1)
    assert parked.properties.user_id == "guest"
    assert await b.messages(b.dead) == []


async def test_an_open_circuit_parks_copies_without_publishing_them(bench: MakeBench) -> None:
    """One return opens the breaker: that copy and the next wait in its queue, no round spent."""
    breaker = {"circuit_breakers": [{"exchange": "{p}.void", "failures": 1, "open_for": "60s",
                                     "wait": "30s"}]}
    b = await bench(shop(to("lost", "{p}.void", "x")), schemas={"T/v1.json": SCHEMA},
                    policies={"b.yaml": breaker, **NO_TIER})
    for _ in range(2):
        await b.send({"n": 1}, "T")
        assert await b.route_one() is Verdict.ACK

    waiting = await b.messages(b.retry_queue(30000))
    assert len(waiting) == 2
    assert all(m.properties.headers["x-mcp-retries"] == 0 for m in waiting)
    assert all(m.properties.headers["x-mcp-last-error"].startswith("circuit open for")
               for m in waiting)
    assert await b.messages(b.dead) == []


async def test_a_route_without_consumer_is_dead_lettered_no_consumer(bench: MakeBench) -> None:
    """Rule dead_letter and no live service on the route: that copy goes to no_consumer."""
    policies = {"u.yaml": {"unconsumed": [{"match": "*", "action": "dead_letter"}]}}
    b = await bench(shop(to("billing", "{p}.orders", "order.new"),
                         to("audit", "{p}.orders", "log.t")),
                    schemas={"T/v1.json": SCHEMA}, policies=policies)
    b.shell.unconsumed.add("audit")
    await b.send({"n": 1}, "T")

    assert await b.route_one() is Verdict.ACK

    [dead] = await b.messages(b.dead)
    h = dead.properties.headers
    assert (h["x-mcp-reason"], h["x-mcp-route"]) == ("no_consumer", "audit")
    assert len(await b.messages(b.name("billing"))) == 1


async def test_a_message_that_is_not_json_is_dead_lettered_whole(bench: MakeBench) -> None:
    """Nothing routed: one dead letter, malformed, naming no route."""
    b = await bench(shop(to("billing", "{p}.orders", "order.new")),
                    schemas={"T/v1.json": SCHEMA})
    await b.send(b"{not json", "T")

    assert await b.route_one() is Verdict.ACK

    [dead] = await b.messages(b.dead)
    assert dead.properties.headers["x-mcp-reason"] == "malformed"
    assert "x-mcp-route" not in dead.properties.headers
    assert await b.messages(b.name("billing")) == []


async def test_a_copy_whose_version_cannot_be_had_is_dead_lettered_alone(
        bench: MakeBench) -> None:
    """A v2 message and a route pinned to v1: that copy is schema_invalid, the other lands."""
    schemas = {"T/v1.json": SCHEMA, "T/v2.json": SCHEMA,
               "T/evolution.yaml": "compatibility: full\n"}
    b = await bench(shop(to("legacy", "{p}.orders", "order.old", version=1),
                         to("audit", "{p}.orders", "log.t")), schemas=schemas)
    await b.send({"n": 1}, "T", headers={"x-schema-version": 2})

    assert await b.route_one() is Verdict.ACK

    [dead] = await b.messages(b.dead)
    h = dead.properties.headers
    assert (h["x-mcp-reason"], h["x-mcp-route"]) == ("schema_invalid", "legacy")
    assert "does not downcast" in h["x-mcp-error"]
    [audit] = await b.messages(b.name("audit"))
    assert audit.properties.headers["x-mcp-route"] == "audit"
    assert await b.messages(b.name("billing")) == []

