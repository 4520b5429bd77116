"""Planning a reload (pure) and noticing file changes."""

from __future__ import annotations

from router.config.configuration import Config
from router.config.reload import Watcher, review_reload
from tests.unit.conftest import LoadConfig, WriteConfig

SCHEMAS = {"Order/v1.json": {"type": "object"}}


def _config(config: LoadConfig, topology: str, **files: object) -> Config:
    return config(topology=topology, schemas=SCHEMAS, **files)


def test_additions_are_listed_as_changes(config: LoadConfig) -> None:
    """New exchanges, queues, bindings and routes are what a reload will do."""
    old = _config(config, "exchanges: [{name: a}]\n")
    new = _config(config, "exchanges: [{name: a}, {name: b}]\nqueues: [{name: q}]\n"
                          "bindings: [{exchange: b, queue: q}]\n"
                          "routes: [{name: r, message_type: Order, to: [{exchange: b}]}]\n")

    plan = review_reload(old, new)

    assert plan.refusals == []
    assert {"new exchange b (topic)", "new queue q (quorum)", "new binding b -> q []",
            "route r added"} <= set(plan.changes)


def test_what_rabbitmq_cannot_change_in_place_is_refused(config: LoadConfig) -> None:
    """Queue type or arguments, exchange type, ingress settings: refused, each said."""
    old = _config(config, "exchanges: [{name: a}]\nqueues: [{name: q}]\n")
    new = _config(config, "ingress: {queue: other}\nexchanges: [{name: a, type: fanout}]\n"
                          "queues: [{name: q, arguments: {x-max-length: 10}}]\n")

    plan = review_reload(old, new)

    assert len(plan.refusals) == 3
    assert plan.refusals[0].startswith("the ingress, dead-letter and control settings change only")
    assert plan.refusals[1].startswith("queue 'q': type or arguments changed")
    assert plan.refusals[2].startswith("exchange 'a': type or arguments changed")


def test_policy_and_schema_changes_are_listed(config: LoadConfig) -> None:
    """A new schema version and edited policies are changes, not refusals."""
    old = _config(config, "exchanges: []\n")
    new = config(topology="exchanges: []\n",
                 schemas={**SCHEMAS, "Order/v2.json": {"type": "object"}},
                 policies={"p.yaml": "priority: [{match: '*', priority: 3}]\n"})

    plan = review_reload(old, new)

    assert plan.refusals == []
    assert "schema Order v2 added" in plan.changes
    assert "policies changed" in plan.changes


def test_watcher_sees_edits_once(write_config: WriteConfig) -> None:
    """An edited file is a change, reported once."""
    root = write_config(topology="exchanges: []\n", schemas=SCHEMAS)
    watcher = Watcher(root)

    (root / "topology.yaml").write_text("exchanges: [{name: a}]\n")

    assert watcher.changed() is True
    assert watcher.changed() is False
