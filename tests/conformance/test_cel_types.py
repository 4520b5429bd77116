"""``check``'s CEL type checker against the cel-spec conformance tests: no false refusals.

``router.config.celcheck`` refuses a ``when`` only when it cannot type-check.  Every
cel-spec case that evaluates to a value (the same vendored files as
``test_cel_spec``) is a well-typed expression, so the checker must accept it,
with its bindings as ``dyn``, and where it infers a definite type, that type
must be the one of the expected value (cases the spec marks ``disable_check``
are run unchecked there, so here too).  Expressions outside the parser's
subset (a message construction, ``.?`` optional selection) are skipped, as
the checker trusts them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from router.config.celcheck import TypeError_, type_of
from router.config.celparse import Unsupported, parse
from router.config.celtypes import DYN, NUMBER, ListT, MapT, ObjectT, Prim, Type
from tests.conformance.test_cel_spec import (
    DEVIATIONS,
    Message,
    NotApplicable,
    _applicable,
    _cases,
    _Type,
    _value,
)

SUITE = "cel-spec conformance (check: no false refusals)"


def _matches(kind: Type, value: Any) -> bool:
    """Whether a value of this Python type can have the inferred CEL type."""
    if kind == DYN:
        return True
    if kind == NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(kind, ListT):
        return isinstance(value, list)
    if isinstance(kind, MapT | ObjectT):
        return isinstance(value, dict)
    assert isinstance(kind, Prim)
    expected = {bool: "bool", int: ("int", "uint"), float: "double", str: "string",
                bytes: "bytes", type(None): "null", datetime: "timestamp",
                timedelta: "duration", _Type: "type"}
    names = expected.get(type(value), ())
    return kind.name in ((names,) if isinstance(names, str) else names)


@pytest.mark.conformance(SUITE)
@pytest.mark.parametrize("test", _cases())
def test_a_well_typed_expression_type_checks(test: Message) -> None:
    """A case the spec evaluates to a value is accepted, with the value's type."""
    name = str(test["name"][0])
    try:
        variables = _applicable(test)
        if "value" not in test:
            raise NotApplicable("an evaluation error is expected")
        if test.get("disable_check", [False])[0]:
            raise NotApplicable("the spec runs it unchecked (disable_check)")
        expected = _value(test["value"][0])
        tree = parse(test["expr"][0])
    except (NotApplicable, Unsupported) as exc:
        pytest.skip(f"not for the checker: {exc}")
    if any(name in key for key in DEVIATIONS):
        pytest.skip("a documented deviation of the router's CEL")

    try:
        kind = type_of(tree, dict.fromkeys(variables, DYN))
    except TypeError_ as exc:
        pytest.fail(f"refused a well-typed expression {test['expr'][0]!r}: {exc}")

    assert _matches(kind, expected), f"{test['expr'][0]!r}: inferred {kind}, value {expected!r}"
