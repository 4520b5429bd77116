"""Plans made from the management API's listing (pure comparison, canned listings)."""

from __future__ import annotations

from typing import Any

from router.broker.inventory import Inventory, compare, management_url_for
from tests.unit.conftest import LoadConfig

TOPOLOGY: dict[str, Any] = {
    "exchanges": [{"name": "orders", "type": "topic"}],
    "queues": [{"name": "billing", "type": "quorum"},
               {"name": "review", "type": "classic", "max_priority": 10}],
    "bindings": [{"exchange": "orders", "queue": "billing", "routing_key": "order.*"},
                 {"exchange": "orders", "queue": "review", "routing_key": "order.review"}],
}


def _exchange(name: str, kind: str = "topic") -> dict[str, Any]:
    return {"name": name, "type": kind, "durable": True, "auto_delete": False,
            "internal": False, "arguments": {}}


def test_differences_missing_entities_and_bindings(config: LoadConfig) -> None:
    """A changed exchange type, a missing queue argument, a missing queue and a missing
    binding are each reported; what matches is unchanged."""
    loaded = config(topology=TOPOLOGY)
    inventory = Inventory(
        exchanges={"orders": _exchange("orders", "direct"),
                   "mcp.ingress": _exchange("mcp.ingress")},
        queues={"review": {"name": "review", "type": "classic", "durable": True,
                           "auto_delete": False, "arguments": {}},
                "billing": {"name": "billing", "type": "quorum", "durable": True,
                            "auto_delete": False, "arguments": {"x-queue-type": "quorum"}}},
        bindings=frozenset({("orders", "billing", "order.*", "{}")}))

    plan = compare(loaded, inventory)

    assert plan.conflicts == [
        "exchange orders (topic): type is 'direct' on the broker, the file says 'topic'",
        "queue review (classic): argument x-max-priority is absent on the broker, "
        "the file says 10",
    ]
    assert "exchange mcp.dlx (topic)" in plan.create
    assert "queue mcp.router.ingress (quorum)" in plan.create
    assert "binding orders -> review [order.review]" in plan.create
    assert "binding orders -> billing [order.*]" in plan.unchanged
    assert "queue billing (quorum)" in plan.unchanged


def test_management_url_defaults_to_the_broker_host_and_user() -> None:
    """Port 15672 of the AMQP host, with the AMQP credentials (quoted)."""
    assert management_url_for("amqp://svc:p%40ss@rabbit.local:5672/prod") == \
        "http://svc:p%40ss@rabbit.local:15672/"
    assert management_url_for("amqp://localhost") == "http://guest:guest@localhost:15672/"
