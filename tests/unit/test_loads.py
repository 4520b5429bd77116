"""The load board: looks plus copies sent since, staleness, breakers, per-branch metrics."""

from __future__ import annotations

from typing import Any

import pytest

from router.config.configuration import Config
from router.core.breakers import Admission, BreakerBoard, Breakers, QueueStatus
from router.core.choose import NO_VIEW, QueueLoad
from router.core.pipeline import decide
from router.observe.metrics import Metrics
from router.runtime.loads import LoadBoard
from tests.unit.conftest import LoadConfig, make_envelope
from tests.unit.test_alternatives import topology
from tests.unit.test_route_versions import SCHEMAS

BRANCHES = [{"exchange": "orders", "routing_key": "stable"},
            {"exchange": "orders", "routing_key": "canary"}]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def loaded(config: LoadConfig) -> Config:
    """least_loaded over q.stable and q.canary, looked at every second, with a breaker rule."""
    return config(topology=topology(strategy="least_loaded", check_every="1s",
                                    alternatives=BRANCHES),
                  schemas=SCHEMAS,
                  policies={"b.yaml": {"circuit_breakers": [{"exchange": "orders",
                                                             "failures": 1}]}})


def breakers_of(config: Config) -> Breakers:
    return BreakerBoard().of(config.policies.circuit_breakers, config.topology)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def route_one(board: LoadBoard, config: Config, breakers: Breakers, i: int) -> Any:
    outcome = decide(make_envelope({"amount": 1}, type="Order", message_id=f"m{i}",
                                   headers={"x-schema-version": 1}), config,
                     view=board.view(config, lambda: breakers))
    board.took(outcome, config)
    return outcome


def test_the_watcher_is_asked_for_the_branch_queues_at_the_route_interval(
        loaded: Config) -> None:
    """Every queue a least_loaded branch feeds is watched, at the route's check_every."""
    board = LoadBoard(Metrics())

    assert board.layout(loaded.router, loaded.topology).watched == {"q.stable": 1.0,
                                                                    "q.canary": 1.0}


def test_copies_sent_since_the_look_count_as_depth(loaded: Config) -> None:
    """Between two looks the router adds its own copies, so one look never sends every copy
    to one queue: 20 copies after equal looks split about evenly."""
    clock = Clock()
    board, breakers = LoadBoard(Metrics(), clock), breakers_of(loaded)
    for queue in ("q.stable", "q.canary"):
        board.observe(queue, QueueStatus(0, 1), clock.now)

    copies = [route_one(board, loaded, breakers, i).copies[0].routing_key for i in range(20)]

    assert abs(copies.count("stable") - copies.count("canary")) <= 1
    view = board.view(loaded, lambda: breakers)
    assert view.loads["q.stable"].messages + view.loads["q.canary"].messages == 20  # type: ignore[union-attr]  # both seen


def test_a_new_look_replaces_what_was_counted(loaded: Config) -> None:
    """The look includes what was sent before it: the counted copies start again from 0."""
    clock = Clock()
    board, breakers = LoadBoard(Metrics(), clock), breakers_of(loaded)
    board.observe("q.stable", QueueStatus(0, 1), clock.now)
    board.observe("q.canary", QueueStatus(50, 1), clock.now)
    for i in range(5):
        route_one(board, loaded, breakers, i)

    board.observe("q.stable", QueueStatus(2, 1), clock.now)

    assert board.view(loaded, lambda: breakers).loads["q.stable"] == QueueLoad(2, 1)


def test_stale_looks_are_not_believed(loaded: Config) -> None:
    """A look older than three intervals and a second is left out of the view."""
    clock = Clock()
    board, breakers = LoadBoard(Metrics(), clock), breakers_of(loaded)
    board.observe("q.stable", QueueStatus(0, 1), clock.now)

    clock.now += 3.9
    fresh = board.view(loaded, lambda: breakers)
    clock.now += 0.2
    stale = board.view(loaded, lambda: breakers)

    assert "q.stable" in fresh.loads
    assert "q.stable" not in stale.loads


def test_an_open_breaker_is_passed_by_and_counted_as_a_skip(loaded: Config) -> None:
    """The canary's breaker opens: least_loaded skips it, and the metric says why."""
    clock = Clock()
    metrics = Metrics()
    board, breakers = LoadBoard(metrics, clock), breakers_of(loaded)
    for queue in ("q.stable", "q.canary"):
        board.observe(queue, QueueStatus(0, 1), clock.now)
    breaker = breakers.of("orders", "canary", clock.now)
    assert breaker is not None
    breaker.failed(Admission.ALLOW, clock.now, "returned")

    keys = {route_one(board, loaded, breakers, i).copies[0].routing_key for i in range(10)}

    assert keys == {"stable"}
    assert sample(metrics, "mcp_router_branch_skips_total", route="billing",
                  branch="orders/canary", reason="circuit_open") == 10


def test_a_breaker_past_open_for_takes_the_probe(loaded: Config) -> None:
    """Once open_for is over the branch is no longer blocked, so a probe can close it."""
    clock = Clock()
    board, breakers = LoadBoard(Metrics(), clock), breakers_of(loaded)
    breaker = breakers.of("orders", "canary", clock.now)
    assert breaker is not None
    breaker.failed(Admission.ALLOW, clock.now, "returned")

    clock.now += 31
    view = board.view(loaded, lambda: breakers)

    assert view.blocked == {}


def test_branch_metrics_count_copies_and_the_share_taken(loaded: Config) -> None:
    """Per branch: copies taken and the share of the route's copies."""
    clock = Clock()
    metrics = Metrics()
    board, breakers = LoadBoard(metrics, clock), breakers_of(loaded)
    board.observe("q.stable", QueueStatus(0, 1), clock.now)
    board.observe("q.canary", QueueStatus(1000, 1), clock.now)

    for i in range(10):
        route_one(board, loaded, breakers, i)

    assert sample(metrics, "mcp_router_branch_copies_total", route="billing",
                  branch="orders/stable") == 10
    assert sample(metrics, "mcp_router_branch_share", route="billing",
                  branch="orders/stable") == 1.0
    assert sample(metrics, "mcp_router_branch_share", route="billing",
                  branch="orders/canary") == 0.0


def test_a_configuration_without_least_loaded_needs_no_view(config: LoadConfig) -> None:
    """Weighted routes decide without loads: the board hands out the empty view."""
    weighted = config(topology=topology(strategy="weighted", alternatives=BRANCHES),
                      schemas=SCHEMAS)

    assert LoadBoard(Metrics()).view(weighted, lambda: breakers_of(weighted)) is NO_VIEW


def test_the_snapshot_shows_each_branch_for_a_console(loaded: Config) -> None:
    """Per branch: copies, share, skips by reason and what the queues looked like."""
    clock = Clock()
    board, breakers = LoadBoard(Metrics(), clock), breakers_of(loaded)
    board.observe("q.stable", QueueStatus(4, 1), clock.now)
    board.observe("q.canary", QueueStatus(0, 0), clock.now)

    route_one(board, loaded, breakers, 1)

    assert board.snapshot() == {"billing": {
        "orders/stable": {"copies": 1, "share": 1.0, "skips": {},
                          "queues": {"q.stable": {"messages": 4, "consumers": 1,
                                                  "sent_since": 1}}},
        "orders/canary": {"copies": 0, "share": 0.0, "skips": {"no_consumer": 1},
                          "queues": {"q.canary": {"messages": 0, "consumers": 0,
                                                  "sent_since": 0}}}}}
