"""Circuit breakers per destination: states, queue conditions, rules (time injected)."""

from __future__ import annotations

from typing import Any

import pytest

from router.config.breaker_rules import BreakerRule
from router.config.reach import queues_reached, topic_matches
from router.config.topology import Binding, Destination, Exchange, Queue, RouteSpec, Topology
from router.core.breakers import Admission, Breaker, BreakerBoard, Breakers, QueueStatus, State
from tests.unit.conftest import Check, LoadConfig


def rule(**changes: Any) -> BreakerRule:
    values: dict[str, Any] = {
        "exchange": "orders", "routing_key": "*", "failures": 3, "max_depth": None,
        "require_consumers": False, "queues": None, "open_for": 10.0, "wait": 1.0,
        "check_every": 1.0, "where": "policies/b.yaml:2"}
    values.update(changes)
    return BreakerRule(**values)


TOPOLOGY = Topology(
    exchanges=(Exchange("orders", "topic"), Exchange("ship", "direct"),
               Exchange("audit", "fanout")),
    queues=(Queue("billing"), Queue("review", "classic"), Queue("shipping"),
            Queue("log", "stream"), Queue("copy")),
    bindings=(Binding("orders", "billing", "order.*"), Binding("orders", "review", "order.review"),
              Binding("ship", "shipping", "ship"), Binding("audit", "log"),
              Binding("audit", "copy")),
)


@pytest.mark.parametrize(("pattern", "key", "hit"), [
    ("order.*", "order.created", True),
    ("order.*", "order.created.v2", False),
    ("order.#", "order", True),
    ("order.#", "order.a.b", True),
    ("#", "anything.at.all", True),
    ("*.created", "order.created", True),
    ("order.review", "order.reviews", False),
    ("#.review", "a.b.review", True),
])
def test_topic_matching_follows_amqp(pattern: str, key: str, hit: bool) -> None:
    """``*`` is one word and ``#`` any number, as RabbitMQ's topic exchange matches."""
    assert topic_matches(pattern, key) is hit


def test_queues_reached_per_exchange_type() -> None:
    """Topic and direct bindings are matched; a fanout reaches every bound queue."""
    assert queues_reached(TOPOLOGY, "orders", "order.review") == ("billing", "review")
    assert queues_reached(TOPOLOGY, "orders", "order.created") == ("billing",)
    assert queues_reached(TOPOLOGY, "ship", "ship") == ("shipping",)
    assert queues_reached(TOPOLOGY, "ship", "other") == ()
    assert queues_reached(TOPOLOGY, "audit", "x") == ("log", "copy")


def test_consecutive_refusals_open_the_breaker_and_copies_wait() -> None:
    """Three refusals in a row open it; a success in between starts the count again."""
    breaker = Breaker("orders/a", rule(), ())
    breaker.failed(Admission.ALLOW, 0.0, "nack")
    breaker.failed(Admission.ALLOW, 0.0, "nack")
    breaker.succeeded(Admission.ALLOW, 0.0)
    breaker.failed(Admission.ALLOW, 1.0, "nack")
    breaker.failed(Admission.ALLOW, 1.0, "nack")
    assert breaker.state is State.CLOSED

    breaker.failed(Admission.ALLOW, 2.0, "nack")

    assert breaker.state is State.OPEN
    assert breaker.reason == "3 consecutive publishes refused; last: nack"
    assert breaker.admit(5.0) is Admission.WAIT


def test_after_open_for_one_probe_goes_and_its_success_closes() -> None:
    """Half-open lets exactly one copy through; the others keep waiting until it succeeds."""
    breaker = Breaker("orders/a", rule(failures=1), ())
    breaker.failed(Admission.ALLOW, 0.0, "nack")

    probe = breaker.admit(10.0)
    other = breaker.admit(10.5)

    assert (probe, other) == (Admission.PROBE, Admission.WAIT)
    assert breaker.state is State.HALF_OPEN
    breaker.succeeded(probe, 11.0)
    assert breaker.state is State.CLOSED
    assert breaker.admit(11.0) is Admission.ALLOW


def test_failed_probe_opens_again_for_another_period() -> None:
    """A refused probe re-opens the breaker; the next probe waits a full ``open_for``."""
    breaker = Breaker("orders/a", rule(failures=1), ())
    breaker.failed(Admission.ALLOW, 0.0, "nack")
    probe = breaker.admit(10.0)

    breaker.failed(probe, 10.2, "still full")

    assert breaker.state is State.OPEN
    assert breaker.reason == "probe failed: still full"
    assert breaker.admit(19.0) is Admission.WAIT
    assert breaker.admit(20.2) is Admission.PROBE


def test_probe_that_tells_nothing_is_released() -> None:
    """A probe lost to a dead connection frees the slot for the next copy at once."""
    breaker = Breaker("orders/a", rule(failures=1), ())
    breaker.failed(Admission.ALLOW, 0.0, "nack")
    probe = breaker.admit(10.0)

    breaker.released(probe)

    assert breaker.admit(10.1) is Admission.PROBE


def test_queue_without_consumers_opens_until_one_is_back() -> None:
    """A watched condition opens at once and holds regardless of time; when it clears,
    the breaker goes half-open and one probe closes it."""
    changes: list[tuple[State, State]] = []
    breaker = Breaker("orders/a", rule(require_consumers=True), ("billing",),
                      on_change=lambda b, old: changes.append((old, b.state)))

    breaker.observe("billing", "queue 'billing' has no consumers", 0.0)
    assert breaker.admit(1000.0) is Admission.WAIT
    breaker.observe("billing", None, 1001.0)
    probe = breaker.admit(1001.0)
    breaker.succeeded(probe, 1001.5)

    assert probe is Admission.PROBE
    assert changes == [(State.CLOSED, State.OPEN), (State.OPEN, State.HALF_OPEN),
                       (State.HALF_OPEN, State.CLOSED)]


@pytest.mark.parametrize(("status", "problem"), [
    (QueueStatus(5, 1), None),
    (QueueStatus(6, 1), "queue 'billing' holds 6 messages (limit 5)"),
    (QueueStatus(0, 0), "queue 'billing' has no consumers"),
    (None, "queue 'billing' does not exist"),
])
def test_watched_queue_conditions(status: QueueStatus | None, problem: str | None) -> None:
    """Depth over the limit, no consumers, or a missing queue open the breaker."""
    breakers = Breakers((rule(max_depth=5, require_consumers=True),), TOPOLOGY)
    breaker = breakers.of("orders", "order.created")
    assert breaker is not None

    breakers.observe("billing", status, 1.0)

    assert breaker.state is (State.CLOSED if problem is None else State.OPEN)
    assert breaker.reason == problem


def test_breakers_by_destination_first_rule_wins() -> None:
    """Each destination gets its own breaker from the first covering rule; others none."""
    first, second = rule(routing_key="order.review", failures=1), rule(failures=7)
    breakers = Breakers((first, second), TOPOLOGY)

    review = breakers.of("orders", "order.review")
    created = breakers.of("orders", "order.created")

    assert review is not None
    assert review.rule is first
    assert created is not None
    assert created.rule is second
    assert created is breakers.of("orders", "order.created")
    assert breakers.of("ship", "ship") is None
    assert created.queues == ("billing",)


def test_streams_are_not_watched_and_watched_queues_come_from_bindings() -> None:
    """Queues bound to a covered exchange are watched; a stream's depth means nothing."""
    breakers = Breakers((rule(exchange="audit", require_consumers=True),
                         rule(exchange="orders", queues=("review",), max_depth=3)), TOPOLOGY)

    assert set(breakers.watched()) == {"copy", "review"}
    audit = breakers.of("audit", "x")
    assert audit is not None
    assert audit.queues == ("copy",)


def test_condition_seen_before_first_copy_applies_to_a_new_breaker() -> None:
    """The watcher may look before any copy: a breaker created later starts open."""
    breakers = Breakers((rule(require_consumers=True),), TOPOLOGY)
    breakers.observe("billing", QueueStatus(0, 0), 1.0)

    breaker = breakers.of("orders", "order.created", 2.0)

    assert breaker is not None
    assert breaker.state is State.OPEN


def test_reload_keeps_what_was_seen_for_unchanged_rules() -> None:
    """A new configuration with the same rule remembers the queue without consumers."""
    same = rule(require_consumers=True)
    board = BreakerBoard()
    board.of((same,), TOPOLOGY).observe("billing", QueueStatus(0, 0), 1.0)

    after = board.of((rule(require_consumers=True),), Topology(
        exchanges=TOPOLOGY.exchanges, queues=TOPOLOGY.queues, bindings=TOPOLOGY.bindings))
    breaker = after.of("orders", "order.created", 2.0)

    assert breaker is not None
    assert breaker.state is State.OPEN
    assert board.of(after.rules, after.topology) is after


def test_snapshot_shows_each_breaker() -> None:
    """``/readyz`` detail: state, reason, how long, failures and queues per destination."""
    breakers = Breakers((rule(failures=1),), TOPOLOGY)
    breaker = breakers.of("orders", "order.created", 0.0)
    assert breaker is not None
    breaker.failed(Admission.ALLOW, 1.0, "nack")

    assert breakers.snapshot(3.5) == {"orders/order.created": {
        "state": "open", "reason": "1 consecutive publish refused; last: nack",
        "for_seconds": 2.5, "consecutive_failures": 1, "queues": ["billing"]}}

ROUTES = (RouteSpec("r", "Order", (Destination("orders", "order.created"),)),)


def test_time_in_state_counts_from_when_the_breaker_was_made_not_from_boot() -> None:
    """``for_seconds`` of a closed breaker is the monotonic time since it was created."""
    board = BreakerBoard()
    routed = Topology(exchanges=TOPOLOGY.exchanges, queues=TOPOLOGY.queues,
                      bindings=TOPOLOGY.bindings, routes=ROUTES)
    breakers = board.of((rule(),), routed, now=5000.0)   # a machine up for 5000 s
    late = breakers.of("orders", "order.late", 5003.0)    # first used later
    assert late is not None

    snapshot = breakers.snapshot(5010.0)

    assert snapshot["orders/order.created"]["for_seconds"] == 10.0
    assert snapshot["orders/order.late"]["for_seconds"] == 7.0


ROUTED = {
    "exchanges": [{"name": "orders", "type": "topic"}],
    "queues": [{"name": "billing", "type": "quorum"}, {"name": "log", "type": "stream"}],
    "bindings": [{"exchange": "orders", "queue": "billing", "routing_key": "#"}],
    "routes": [{"name": "r", "message_type": "Order", "to": [{"exchange": "orders"}]}],
}
ORDER = {"Order/v1.json": {"type": "object"}}


def test_breaker_rules_load_with_defaults_and_their_wait_queue(config: LoadConfig) -> None:
    """Defaults: 5 failures, open 30 s, wait 5 s, look every 5 s; the wait gets a queue."""
    loaded = config(topology=ROUTED, schemas=ORDER, policies={"b.yaml": {
        "circuit_breakers": [{"exchange": "orders", "require_consumers": True,
                              "wait": "250ms"}]}})

    [loaded_rule] = loaded.policies.circuit_breakers
    assert (loaded_rule.failures, loaded_rule.open_for, loaded_rule.wait,
            loaded_rule.check_every) == (5, 30.0, 0.25, 5.0)
    assert (loaded_rule.routing_key, loaded_rule.max_depth, loaded_rule.queues) == \
        ("*", None, None)
    assert "mcp.router.ingress.retry.250ms" in {q.name for q in loaded.retry_queues()}


def test_bad_breaker_rules_are_located(check: Check) -> None:
    """Every mistake is reported with its file and line."""
    text = ("circuit_breakers:\n"
            "  - {exchange: orders, failures: 0, wait: soon}\n"
            "  - {exchange: orders, queues: [nope, log], max_depth: 10}\n"
            "  - {exchange: payments}\n"
            "  - {exchange: orders, colour: red}\n")

    problems = check(topology=ROUTED, schemas=ORDER, policies={"b.yaml": text})

    assert problems == [
        "policies/b.yaml:2: failures must be at least 1",
        "policies/b.yaml:2: wait must be a duration such as 500ms, 5s or 1m "
        "(from 0.001s to 86400s)",
        "policies/b.yaml:5: unknown key 'colour' in circuit breaker (known: check_every, "
        "exchange, failures, max_depth, open_for, queues, require_consumers, routing_key, "
        "wait)",
        "policies/b.yaml:3: circuit breaker: queue 'nope' is not declared in topology.yaml",
        "policies/b.yaml:3: circuit breaker: queue 'log' is a stream; its depth and "
        "consumers say nothing about delivery",
        "policies/b.yaml:4: circuit breaker: exchange 'payments' matches no route destination",
    ]
