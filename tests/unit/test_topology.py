"""``topology.yaml``: what ``check`` reports, each problem as FILE:LINE: message."""

from __future__ import annotations

from textwrap import dedent

import pytest

from router.config.topology import Queue, Topology
from tests.unit.conftest import ORDER_SCHEMA, Check

SCHEMAS = {"Order/v1.json": ORDER_SCHEMA}
ITEMS = {"Order/v1.json": {"type": "object", "properties": {"items": {"type": "array", "items": {
    "type": "object", "properties": {"quantity": {"type": "integer"}, "sku": {"type": "string"},
                                     "tags": {"type": "array", "items": {"type": "string"}}}}}}}}


def route_with_when(when: str) -> str:
    """A topology whose one route's ``when`` is on line 6."""
    return dedent(f"""\
        exchanges:
          - {{name: orders, type: topic}}
        routes:
          - name: big
            message_type: Order
            when: '{when}'
            to:
              - {{exchange: orders}}
        """)


def test_valid_topology_has_no_problems(check: Check) -> None:
    """A topology using every section correctly passes check."""
    text = dedent("""\
        ingress: {exchange: in.x, queue: in.q, delivery_limit: 3}
        dead_letter: {exchange: dl.x, queue: dl.q}
        exchanges:
          - {name: orders, type: topic}
          - {name: audit, type: fanout, arguments: {alternate-exchange: orders}}
        queues:
          - {name: billing, type: quorum}
          - {name: review, type: classic, max_priority: 10}
          - {name: log, type: stream, arguments: {x-max-age: 7D}}
        bindings:
          - {exchange: orders, queue: billing, routing_key: "order.*"}
          - {exchange: audit, queue: log}
        routes:
          - name: all
            message_type: "*"
            to: [{exchange: audit}]
          - name: big
            message_type: Order
            when: 'message.quantity > 5 && has(message.email)'
            to: [{exchange: orders, routing_key: order.big}, {exchange: dl.x}]
        """)

    problems = check(topology=text, schemas=SCHEMAS)

    assert problems == []


def test_yaml_syntax_error_reports_the_line(check: Check) -> None:
    """A YAML syntax error is one problem with the line it was found on."""
    text = "exchanges:\n  - {name: orders, type: topic\nqueues: []\n"

    problems = check(topology=text)

    assert len(problems) == 1
    assert problems[0].startswith("topology.yaml:3: YAML error: ")


def test_unknown_key_is_reported_with_its_line(check: Check) -> None:
    """A misspelt key names itself, the known keys and its line."""
    text = "exchanges:\n  - name: orders\n    tpye: topic\n"

    problems = check(topology=text)

    assert problems == ["topology.yaml:3: unknown key 'tpye' in exchange "
                        "(known: arguments, auto_delete, durable, internal, name, type)"]


def test_unknown_top_level_key_is_reported(check: Check) -> None:
    """An unknown section is reported at its line."""
    problems = check(topology="exchanges: []\nroute: []\n")

    assert len(problems) == 1
    assert problems[0].startswith("topology.yaml:2: unknown key 'route' in topology")


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("exchanges: []\nqueues: []\nexchanges: []\n", 3, "exchanges"),
        ("exchanges:\n  - name: a\n    type: topic\n    name: b\n", 4, "name"),
    ],
)
def test_duplicate_yaml_keys_are_reported(check: Check, text: str, line: int, key: str) -> None:
    """A key written twice in one mapping is an error, not a silent overwrite."""
    problems = check(topology=text)

    assert problems == [f"topology.yaml:{line}: YAML error: duplicate key {key!r}"]


def test_unhashable_yaml_key_is_reported(check: Check) -> None:
    """A complex (list) mapping key is a located YAML problem, not a crash."""
    problems = check(topology="exchanges: []\n? [a, b]\n: 1\n")

    assert len(problems) == 1
    assert problems[0].startswith("topology.yaml:")


def test_recursive_yaml_alias_is_reported(check: Check) -> None:
    """A self-referencing anchor is reported as a problem, not a RecursionError."""
    problems = check(topology="&a [*a]\n")

    assert len(problems) == 1
    assert problems[0].startswith("topology.yaml")


def test_empty_topology_is_valid(check: Check) -> None:
    """An empty topology.yaml means the implied ingress and dead-letter entities only."""
    problems = check(topology="")

    assert problems == []


def test_topology_must_be_a_mapping(check: Check) -> None:
    """A YAML list at the top is one problem at line 1."""
    problems = check(topology="- a\n")

    assert problems == ["topology.yaml:1: topology must be a mapping, got list"]


def test_route_to_undeclared_exchange_is_reported(check: Check) -> None:
    """A route naming an exchange nobody declared is reported at that destination."""
    text = dedent("""\
        routes:
          - name: r
            message_type: Order
            to:
              - {exchange: nowhere}
        """)

    problems = check(topology=text, schemas=SCHEMAS)

    assert problems == ["topology.yaml:5: route 'r' sends to undeclared exchange 'nowhere'"]


def test_bindings_to_undeclared_entities_are_reported(check: Check) -> None:
    """A binding to an undeclared exchange and queue reports both, at their lines."""
    text = dedent("""\
        bindings:
          - exchange: ghost.x
            queue: ghost.q
        """)

    problems = check(topology=text)

    assert problems == [
        "topology.yaml:2: binding to undeclared exchange 'ghost.x'",
        "topology.yaml:3: binding to undeclared queue 'ghost.q'",
    ]


def test_binding_to_implied_entities_is_fine(check: Check) -> None:
    """The ingress and dead-letter exchanges and queues count as declared."""
    text = "bindings:\n  - {exchange: mcp.dlx, queue: mcp.router.ingress}\n"

    problems = check(topology=text)

    assert problems == []


def test_route_to_the_ingress_exchange_is_refused(check: Check) -> None:
    """Routing back to the ingress would loop, so check refuses it."""
    text = dedent("""\
        routes:
          - name: loop
            message_type: Order
            to:
              - {exchange: mcp.ingress}
        """)

    problems = check(topology=text, schemas=SCHEMAS)

    assert problems == ["topology.yaml:5: route 'loop' sends to the ingress exchange, "
                        "which would loop"]


def test_cel_syntax_error_reports_the_route_line(check: Check) -> None:
    """A ``when`` that does not parse is reported at the ``when`` line, naming the route."""
    problems = check(topology=route_with_when("message.total >"), schemas=SCHEMAS)

    assert len(problems) == 1
    assert problems[0].startswith("topology.yaml:6: route 'big': CEL syntax error: ")


def test_unknown_cel_variable_is_reported(check: Check) -> None:
    """``msg.total > 1`` names a variable a ``when`` cannot see."""
    problems = check(topology=route_with_when("msg.total > 1"), schemas=SCHEMAS)

    assert problems == ["topology.yaml:6: route 'big': unknown variable 'msg' "
                        "(a 'when' sees event, headers, message, properties)"]


def test_unknown_cel_function_is_reported(check: Check) -> None:
    """A call to a function CEL does not provide is reported."""
    problems = check(topology=route_with_when("frobnicate(message.total)"), schemas=SCHEMAS)

    assert problems == ["topology.yaml:6: route 'big': unknown function 'frobnicate'"]


@pytest.mark.parametrize(
    "when",
    [
        "message.items.exists(i, i.quantity > 5)",
        "message.items.all(item, item.sku.startsWith(\"A\"))",
        "message.items.filter(x, x.quantity > 1).map(y, y.sku).size() > 0",
        "message.items.exists(i, i.tags.exists_one(t, t == \"x\"))",
    ],
)
def test_comprehension_variables_are_not_reported(check: Check, when: str) -> None:
    """Variables bound by exists/all/filter/map/exists_one are not unknown variables."""
    problems = check(topology=route_with_when(when), schemas=ITEMS)

    assert problems == []


@pytest.mark.xfail(
    strict=True,
    reason="BUG: route._check_expression treats a comprehension variable as known "
           "everywhere in the expression (regex, not scope), so a stray use is not reported",
)
def test_comprehension_variable_outside_its_scope_is_reported(check: Check) -> None:
    """``i`` used after ``exists(i, ...)`` has closed is an unknown variable."""
    when = "message.items.exists(i, i.quantity > 5) && i.quantity > 1"

    problems = check(topology=route_with_when(when), schemas=SCHEMAS)

    assert problems == ["topology.yaml:6: route 'big': unknown variable 'i' "
                        "(a 'when' sees event, headers, message, properties)"]


@pytest.mark.parametrize("qtype", ["quorum", "stream"])
def test_max_priority_needs_a_classic_queue(check: Check, qtype: str) -> None:
    """max_priority on a quorum or stream queue is refused at its line."""
    text = f"queues:\n  - name: q\n    type: {qtype}\n    max_priority: 5\n"

    problems = check(topology=text)

    assert len(problems) == 1
    assert problems[0].startswith("topology.yaml:4: max_priority needs a classic queue")


def test_max_priority_out_of_range_is_refused(check: Check) -> None:
    """max_priority must lie in 1..255."""
    problems = check(topology="queues:\n  - {name: q, type: classic, max_priority: 256}\n")

    assert problems == ["topology.yaml:2: max_priority must be between 1 and 255"]


def test_route_without_schema_is_reported(check: Check) -> None:
    """A route for a message type with no schema in schemas/ is reported at the route."""
    text = dedent("""\
        exchanges: [{name: orders}]
        routes:
          - name: r
            message_type: Missing
            to: [{exchange: orders}]
        """)

    problems = check(topology=text, schemas=SCHEMAS)

    assert problems == ["topology.yaml:3: route 'r': no schema for message type 'Missing' "
                        "in schemas/"]


def test_glob_route_needs_no_schema(check: Check) -> None:
    """A route for ``Order*`` is not checked against the registry by name."""
    text = ("exchanges: [{name: a}]\n"
            "routes:\n  - {name: r, message_type: 'Ord*', to: [{exchange: a}]}\n")

    problems = check(topology=text)

    assert problems == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("exchanges: [{name: amq.mine}]\n",
         "topology.yaml:1: exchange 'amq.mine': names starting with 'amq.' are reserved "
         "by RabbitMQ"),
        ("exchanges: [{name: a, type: nope}]\n",
         "topology.yaml:1: 'type' must be one of direct, topic, fanout, headers, got 'nope'"),
        ("exchanges:\n  - {name: a}\n  - {name: a}\n",
         "topology.yaml:3: exchange 'a' is declared twice"),
        ("queues: [{name: q, durable: false}]\n",
         "topology.yaml:1: quorum queues are always durable"),
        ("queues: [{name: q, arguments: {x-queue-type: classic}}]\n",
         "topology.yaml:1: set the queue type with 'type', not the x-queue-type argument"),
        ("ingress: {delivery_limit: 0}\n",
         "topology.yaml:1: delivery_limit must be at least 1"),
        ("exchanges: [{name: a}]\nroutes:\n  - {name: r, message_type: '*', to: []}\n",
         "topology.yaml:3: a route needs at least one destination in 'to'"),
        ("exchanges: [{name: a, durable: 'yes'}]\n",
         "topology.yaml:1: 'durable' must be true or false, got str"),
        ("exchanges: {name: a}\n", "topology.yaml:1: 'exchanges' must be a list"),
    ],
)
def test_entity_mistakes_are_reported(check: Check, text: str, expected: str) -> None:
    """Each shape mistake in an entity is one located problem."""
    problems = check(topology=text)

    assert problems == [expected]


def test_duplicate_route_name_is_reported(check: Check) -> None:
    """Two routes with one name are reported at the second."""
    text = dedent("""\
        exchanges: [{name: a}]
        routes:
          - {name: r, message_type: '*', to: [{exchange: a}]}
          - {name: r, message_type: '*', to: [{exchange: a}]}
        """)

    problems = check(topology=text)

    assert problems == ["topology.yaml:4: route name 'r' is used twice"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("exchanges: [{name: x}]\nbindings:\n  - {exchange: x, queue: q, bogus: 1}\n"
         "  - {exchange: x, queue: nope}\n",
         "topology.yaml:4: binding to undeclared queue 'nope'"),
        ("exchanges: [{name: x}]\nroutes:\n  - {name: r1, message_type: '*', to: [], bogus: 1}\n"
         "  - {name: r2, message_type: '*', to: [{exchange: nope}]}\n",
         "topology.yaml:4: route 'r2' sends to undeclared exchange 'nope'"),
        ("exchanges:\n  - {name: a, bogus: 1}\n  - {name: y}\n  - {name: y}\n",
         "topology.yaml:4: exchange 'y' is declared twice"),
    ],
)
def test_reference_problem_after_an_invalid_entry_has_its_own_line(
    check: Check, text: str, expected: str
) -> None:
    """A reference problem is located at its own entry even when an earlier entry is invalid."""
    problems = check(topology=text)

    assert expected in problems


def test_implied_entities_are_declared() -> None:
    """The ingress quorum queue dead-letters to the DLX with an explicit delivery limit."""
    topology = Topology()

    ingress = topology.all_queues()[0]

    assert ingress.name == "mcp.router.ingress"
    assert ingress.broker_arguments() == {
        "x-dead-letter-exchange": "mcp.dlx",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-delivery-limit": 5,
        "x-queue-type": "quorum",
    }
    assert [e.name for e in topology.all_exchanges()] == ["mcp.ingress", "mcp.dlx"]
    assert [(b.exchange, b.queue, b.routing_key) for b in topology.all_bindings()] == [
        ("mcp.ingress", "mcp.router.ingress", "#"), ("mcp.dlx", "mcp.dead-letters", "#")]


def test_priority_queue_declares_x_max_priority() -> None:
    """A classic queue with max_priority is declared with x-max-priority."""
    queue = Queue("q", "classic", max_priority=10)

    arguments = queue.broker_arguments()

    assert arguments == {"x-queue-type": "classic", "x-max-priority": 10}


def test_replicas_set_the_quorum_group_and_stream_cluster_size(config) -> None:
    """``replicas`` becomes x-quorum-initial-group-size (quorum, also ingress, its retry
    queues and the dead letters) or x-initial-cluster-size (stream)."""
    loaded = config(topology=dedent("""\
        ingress: {replicas: 3}
        dead_letter: {replicas: 2}
        queues:
          - {name: billing, type: quorum, replicas: 3}
          - {name: log, type: stream, replicas: 2}
        """))
    queues = {q.name: dict(q.arguments) for q in loaded.topology.all_queues()}

    assert queues["mcp.router.ingress"]["x-quorum-initial-group-size"] == 3
    assert queues["mcp.dead-letters"]["x-quorum-initial-group-size"] == 2
    assert queues["billing"]["x-quorum-initial-group-size"] == 3
    assert queues["log"]["x-initial-cluster-size"] == 2
    retry = dict(loaded.topology.retry_queue("r", 1.0).arguments)
    assert retry["x-quorum-initial-group-size"] == 3


def test_replicas_on_a_classic_queue_is_refused(check: Check) -> None:
    """Classic queues are not replicated: ``replicas`` on one is a problem at its line."""
    problems = check(topology="queues:\n  - {name: q, type: classic, replicas: 3}\n")

    assert problems == ["topology.yaml:2: replicas needs a quorum queue or a stream; classic "
                        "queues are not replicated"]


def test_control_exchange_is_named_in_the_topology(config) -> None:
    """``control.exchange`` names discovery's exchange; the default is mcp.control."""
    named = config(topology="control: {exchange: shop.control}\n")
    default = config(topology="exchanges: []\n")

    assert named.topology.control.exchange == "shop.control"
    assert default.topology.control.exchange == "mcp.control"
