"""Upcasters: what each step does to a message, and how check counts it for backward."""

from __future__ import annotations

from textwrap import dedent
from typing import Any

import pytest

from router.config.upcasters import Default, Drop, Function, Move, Upcaster, import_function
from router.core.upcast import Failed, run
from tests.unit.conftest import Check
from tests.unit.test_compat import INTEGER, NUMBER, STRING, obj, versions


def add_total(body: dict[str, Any]) -> dict[str, Any]:
    """A function upcaster for these tests: total is the sum of the amounts."""
    total = sum(body.pop("amounts"))
    return {**body, "total": total}


def explode(body: dict[str, Any]) -> dict[str, Any]:
    """A function upcaster that fails."""
    raise KeyError(next(iter(body), "nothing"))


def chain(*steps: Any) -> tuple[Upcaster, ...]:
    return (Upcaster(1, 2, steps),)


@pytest.mark.parametrize(("step", "before", "after"), [
    (Move(("amount",), ("total",)), {"amount": 5}, {"total": 5}),
    (Move(("amount",), ("total",)), {"total": 1}, {"total": 1}),  # absent: nothing
    (Move(("amount",), ("total",)), {"amount": 5, "total": 1}, {"total": 5}),
    (Move(("customer", "id"), ("customer_id",)), {"customer": {"id": "c", "n": 1}},
     {"customer": {"n": 1}, "customer_id": "c"}),
    (Move(("id",), ("customer", "id")), {"id": "c"}, {"customer": {"id": "c"}}),
    (Move(("customer", "id"), ("cid",)), {"x": 1}, {"x": 1}),  # parent absent: nothing
    (Default(("currency",), "EUR"), {}, {"currency": "EUR"}),
    (Default(("currency",), "EUR"), {"currency": "USD"}, {"currency": "USD"}),
    (Default(("meta", "source"), "v1"), {}, {"meta": {"source": "v1"}}),
    (Drop(("legacy",)), {"legacy": True, "a": 1}, {"a": 1}),
    (Drop(("legacy",)), {"a": 1}, {"a": 1}),
    (Drop(("deep", "legacy")), {"deep": {"legacy": 1}}, {"deep": {}}),
    (Function("t:add_total", add_total), {"amounts": [1, 2]}, {"total": 3}),
])
def test_each_step_transforms_a_message(step: Any, before: dict[str, Any],
                                        after: dict[str, Any]) -> None:
    """rename/move, default (only when absent), drop and function steps."""
    assert run(chain(step), before) == after


def test_run_never_mutates_the_decoded_body() -> None:
    """The decoded body is shared by every route: the upcast works on a copy."""
    body = {"customer": {"id": "c"}, "items": [1]}

    run(chain(Move(("customer", "id"), ("cid",)), Default(("items",), [])), body)

    assert body == {"customer": {"id": "c"}, "items": [1]}


def test_default_value_is_not_shared_between_messages() -> None:
    """Each message gets its own copy of a default list."""
    step = Default(("tags",), [])
    first = run(chain(step), {})
    first["tags"].append("x")

    assert run(chain(step), {}) == {"tags": []}


def test_step_on_a_non_object_parent_fails_with_the_step() -> None:
    """Moving below a string is a failure naming the upcast and the step."""
    result = run(chain(Move(("customer", "id"), ("cid",))), {"customer": "c-1"})

    assert result == Failed("upcast v1->v2: move customer.id -> cid: customer is not an object")


def test_failing_function_is_reported_not_raised() -> None:
    """A function that raises gives a failure naming it and the exception."""
    result = run(chain(Function("tests.unit.test_upcast:explode", explode)), {"a": 1})

    assert result == Failed("upcast v1->v2: function tests.unit.test_upcast:explode raised "
                            "KeyError: 'a'")


def test_chain_applies_every_version_step_in_order() -> None:
    """v1 -> v2 -> v3: each upcaster sees the previous one's result."""
    steps = (Upcaster(1, 2, (Move(("a",), ("b",)),)), Upcaster(2, 3, (Move(("b",), ("c",)),)))

    assert run(steps, {"a": 1}) == {"c": 1}


def test_import_function_names_module_and_function() -> None:
    """module:function is imported; dotted attributes are followed."""
    assert import_function("tests.unit.test_upcast:add_total") is add_total
    assert import_function("os.path:join.__call__") is not None
    assert import_function("nocolon") == "function 'nocolon' must be written 'module:function'"


# --- how check counts upcasters -----------------------------------------------------------

V1 = obj({"amount": NUMBER, "customer": obj({"id": STRING}, ("id",)), "legacy": STRING},
         ("amount", "customer"))
V2 = obj({"total_amount": NUMBER, "customer_id": STRING, "currency": STRING},
         ("total_amount", "customer_id", "currency"))
STEPS = """\
    compatibility: backward
    upcasters:
      - from: 1
        steps:
          - rename: {from: amount, to: total_amount}
          - move: {from: customer.id, to: customer_id}
          - drop: customer
          - drop: legacy
          - default: {field: currency, value: EUR}
    """


def test_declared_steps_make_an_incompatible_version_backward_compatible(check: Check) -> None:
    """rename, move, drop and default together turn every v1 message into a valid v2."""
    assert check(schemas=versions(V1, V2, evolution=STEPS)) == []


@pytest.mark.parametrize(("missing", "complaint"), [
    ("rename:", "field /total_amount is required in v2 but v1 messages may lack it"),
    ("move:", "field /customer_id is required in v2 but v1 messages may lack it"),
    ("drop: legacy", "field /legacy is not allowed in v2 but v1 messages may carry it"),
    ("drop: customer", "field /customer is not allowed in v2 but v1 messages may carry it"),
    ("default:", "field /currency is required in v2 but v1 messages may lack it"),
])
def test_each_step_counts_in_the_backward_check(check: Check, missing: str,
                                                complaint: str) -> None:
    """Without one of the steps, check names the field it would have fixed."""
    evolution = "\n".join(line for line in STEPS.splitlines()
                          if f"- {missing}" not in line) + "\n"

    problems = check(schemas=versions(V1, V2, evolution=evolution))

    assert any(complaint in p for p in problems), problems
    assert all(p.startswith("schemas/T/v2.json:") for p in problems)


def test_default_value_the_new_version_refuses_is_reported(check: Check) -> None:
    """A default that is not a valid value of the field in v2 is named with the value."""
    v1 = obj({}, ())
    v2 = obj({"n": INTEGER}, ("n",))
    evolution = dedent("""\
        compatibility: backward
        upcasters:
          - from: 1
            steps: [{default: {field: n, value: many}}]
        """)

    assert check(schemas=versions(v1, v2, evolution=evolution)) == [
        "schemas/T/v2.json:4: not backward compatible with v1: field /n may be 'many' in v1 "
        "messages, which v2 does not accept"]


def test_function_step_is_trusted_by_the_check(check: Check) -> None:
    """check cannot see through Python: a step with a function is not compared."""
    v1 = obj({"amounts": {"type": "array", "items": NUMBER}}, ("amounts",))
    v2 = obj({"total": NUMBER}, ("total",))
    evolution = dedent("""\
        compatibility: backward
        upcasters:
          - from: 1
            steps: [{function: "tests.unit.test_upcast:add_total"}]
        """)

    assert check(schemas=versions(v1, v2, evolution=evolution)) == []
