"""The router's view of live consumers: route flags, metrics, the unconsumed policy."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from router.config.configuration import Config
from router.discovery.liveroutes import Consumers
from router.discovery.registry import Announcement, Handles
from router.observe.metrics import Metrics
from tests.unit.conftest import LoadConfig

TOPOLOGY = {
    "exchanges": [{"name": "orders", "type": "topic"}],
    "queues": [{"name": "billing", "type": "quorum"}],
    "bindings": [{"exchange": "orders", "queue": "billing", "routing_key": "#"}],
    "routes": [{"name": "created", "message_type": "Order", "to": [{"exchange": "orders"}]}],
}
BILLING = Announcement("billing", "billing-1", ("billing",), (Handles("Order"),), 1.0, "t",
                       datetime(2026, 11, 25, tzinfo=UTC))


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(config: LoadConfig) -> tuple[Consumers, Clock, Metrics, Config]:
    loaded = config(topology=TOPOLOGY, schemas={"Order/v1.json": {}}, policies={"u.yaml": {
        "unconsumed": [{"match": "*", "action": "wait", "wait": "1s", "grace": "5s"}]}})
    clock, metrics = Clock(), Metrics()
    consumers = Consumers(metrics, lambda: loaded.topology, clock)
    consumers.listening()
    return consumers, clock, metrics, loaded


def test_a_route_loses_and_regains_its_consumer(
        setup: tuple[Consumers, Clock, Metrics, Config], caplog: pytest.LogCaptureFixture) -> None:
    """Heard: consumed (metric 1); expired: unconsumed (metric 0) with a warning, since it
    had a consumer; heard again: consumed."""
    consumers, clock, metrics, _ = setup
    consumers.heard(BILLING)
    assert metrics.registry.get_sample_value("mcp_router_route_consumed",
                                             {"route": "created"}) == 1

    clock.now += 3.0
    consumers.services.expire(clock.now)
    with caplog.at_level(logging.INFO, "router.consumers"):
        consumers.refresh()

    assert "created" in consumers.unconsumed
    assert metrics.registry.get_sample_value("mcp_router_route_consumed",
                                             {"route": "created"}) == 0
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    consumers.heard(BILLING)
    assert consumers.unconsumed == {}


def test_the_policy_holds_copies_only_after_the_grace(
        setup: tuple[Consumers, Clock, Metrics, Config]) -> None:
    """A router that has just started does not hold copies back before ``grace``."""
    consumers, clock, _, loaded = setup
    consumers.refresh()

    early = consumers.holds("created", "Order", loaded)
    clock.now += 5.0
    later = consumers.holds("created", "Order", loaded)

    assert early is None
    assert later is not None
    assert later.action == "wait"
