"""``check`` type-checks every route's ``when`` against its message type's JSON Schemas."""

from __future__ import annotations

from textwrap import dedent
from typing import Any

import pytest

from router.config.celparse import Unsupported, parse
from tests.unit.conftest import Check

V1 = {"type": "object", "properties": {
    "amount": {"type": "number"}, "status": {"enum": ["open", "paid"]},
    "items": {"type": "array", "items": {"type": "object", "properties": {
        "sku": {"type": "string"}, "quantity": {"type": "integer"}}}},
    "extra": {"type": "object", "additionalProperties": {"type": "string"}}}}
V2 = {"type": "object", "properties": {
    "total_amount": {"$ref": "../_common/money.json#/$defs/amount"},
    "status": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"}}}
SCHEMAS: dict[str, Any] = {"Order/v1.json": V1, "Order/v2.json": V2,
                           "_common/money.json": {"$defs": {"amount": {"type": "number"}}}}


def topology(when: str, *, version: int | None = None, message_type: str = "Order") -> str:
    """One route whose ``when`` is on line 6."""
    return dedent(f"""\
        exchanges:
          - {{name: orders, type: topic}}
        routes:
          - name: r
            message_type: {message_type}
            when: '{when}'
            to:
              - {{exchange: orders}}
        """) + (f"    version: {version}\n" if version else "")


@pytest.mark.parametrize(("when", "why"), [
    ("message.total_amount", "the expression is a number, not a bool"),
    ('1 + "x"', "no operator '+' for int and string"),
    ("message.totl_amount > 1.0", "Order has no field 'totl_amount' in any schema version"),
    ("message.items.exists(i, i.qty > 1)", "has no field 'qty'"),
    ("message.amount + 1.0 > 2 && 1 + 2.0 > 0", "no operator '+' for int and double"),
    ('message.status == 3', "no operator '==' for string and int"),
    ("message.status.startsWith(1)", "startsWith() takes a string, not a int"),
    ('properties.usr == "x"', "properties has no field 'usr' (fields: app_id"),
    ("size(message.amount) > 0", "size() is not defined for a number"),
    ("has(message.nope)", "Order has no field 'nope'"),
    ("message.items.map(i, i.sku)", "the expression is a list(string), not a bool"),
    ("message.created_at > 5", "no operator '>' for string and int"),
])
def test_a_when_that_cannot_be_a_boolean_is_refused_at_its_line(check: Check, when: str,
                                                                   why: str) -> None:
    """Non-boolean results, type errors and unknown fields are FILE:LINE problems."""
    problems = check(topology=topology(when), schemas=SCHEMAS)

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"topology.yaml:6: route 'r': when {when!r}: ")
    assert why in problems[0]


@pytest.mark.parametrize("when", [
    "message.total_amount > 1000.0",
    "message.amount > 10",                                 # number against an int literal
    'has(message.created_at) && message.created_at.startsWith("2026")',   # v2 only
    'message.status in ["open", "paid"]',
    "message.items.exists(i, i.quantity > 2 && i.sku.matches(\"^A\"))",
    'message.extra.colour == "red"',                       # additionalProperties: a map
    'headers["x-tenant"] == "acme" || properties.user_id == "payments"',
    "size(message.items) > 1 ? message.amount > 1.0 : false",
    'timestamp(message.created_at) > timestamp("2026-01-01T00:00:00Z")',
    "message.items[0].quantity >= 1",
    "!(message.amount < 0.0) && -message.amount < 0.0",
    'dyn(message.amount) == "x" || message["amount"] > 2.5',
])
def test_a_when_that_type_checks_passes(check: Check, when: str) -> None:
    """Fields of any version, maps of additionalProperties, headers and macros check."""
    assert check(topology=topology(when), schemas=SCHEMAS) == []


def test_a_route_asking_for_a_version_sees_only_the_versions_up_to_it(check: Check) -> None:
    """A route with ``version: 1`` never sees v2's fields (newer messages are refused)."""
    problems = check(topology=topology("message.total_amount > 1.0", version=1),
                     schemas=SCHEMAS)

    assert any("has no field 'total_amount'" in p for p in problems), problems


def test_a_glob_route_sees_the_fields_of_every_type_it_matches(check: Check) -> None:
    """``message_type: "O*"`` knows the fields of Order and of Other."""
    schemas = {**SCHEMAS, "Other/v1.json": {"type": "object",
                                            "properties": {"colour": {"type": "string"}}}}
    ok = topology('message.colour == "red" || message.amount > 1.0', message_type='"O*"')
    bad = topology("message.flavour > 1", message_type='"O*"')

    assert check(topology=ok, schemas=schemas) == []
    assert "has no field 'flavour'" in check(topology=bad, schemas=schemas)[0]


def test_a_schema_that_says_nothing_lets_every_field_through(check: Check) -> None:
    """Where the schema declares no properties, fields are ``dyn``: nothing to refuse."""
    schemas = {"Order/v1.json": {"type": "object"}}

    assert check(topology=topology("message.anything.at.all > 3"), schemas=schemas) == []


def test_the_parser_reads_every_literal_form() -> None:
    """Strings (raw, bytes, triple-quoted), uint, hex and doubles parse; constructions do not."""
    parse("""r'a\\d' == b"x" || '''t''' == "\\"" || 1u < 2u || 0x1F == 31 || 1e3 > .5""")

    with pytest.raises(Unsupported):
        parse("Foo{a: 1}")


# --- check reports the cause, not its echoes ---------------------------------------------

BREAKERS = "circuit_breakers:\n  - exchange: orders\n    failures: 3\n"


def test_a_broken_topology_does_not_echo_into_the_breaker_policies(check: Check) -> None:
    """A YAML error in topology.yaml is the only problem; breakers are not 'unmatched'."""
    problems = check(topology="routes: [\n", schemas=SCHEMAS,
                     policies={"breakers.yaml": BREAKERS})

    assert len(problems) == 1, problems
    assert problems[0].startswith("topology.yaml:2: YAML error")


def test_a_broken_schema_does_not_echo_as_a_route_without_schema(check: Check) -> None:
    """A schema file that does not load is reported; its routes are not 'without schema'."""
    problems = check(topology=topology("message.amount > 1.0"),
                     schemas={"Order/v1.json": "{not json"})

    assert len(problems) == 1, problems
    assert problems[0].startswith("schemas/Order/v1.json:1:")


def test_an_entity_written_wrong_is_not_also_undeclared(check: Check) -> None:
    """A bad exchange or queue is reported once, not again by each binding, route and
    breaker that names it."""
    topology_text = dedent("""\
        exchanges:
          - {name: e, type: topic, colour: red}
        queues:
          - {name: q, type: quorum, max_priority: 3}
        bindings:
          - {exchange: e, queue: q}
        routes:
          - name: r
            message_type: Order
            to: [{exchange: e}, {exchange: nowhere}]
        """)

    problems = check(topology=topology_text, schemas=SCHEMAS,
                     policies={"b.yaml": "circuit_breakers:\n  - exchange: e\n    queues: [q]\n"})

    assert [p.split(":")[1] for p in problems] == ["2", "4", "10"], problems
    assert "unknown key 'colour'" in problems[0]
    assert "max_priority needs a classic queue" in problems[1]
    assert "undeclared exchange 'nowhere'" in problems[2]
