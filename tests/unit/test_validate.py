"""Stage 2: a decoded message against its schema in the registry."""

from __future__ import annotations

from typing import Any

import pytest

from router.config.schemas import SchemaRegistry
from router.core.outcome import DeadLetter, Decoded, Reason
from router.core.validate import MAX_ERRORS, validate
from tests.unit.conftest import ORDER_SCHEMA, LoadRegistry

UUID = "6f1c2a4e-3b0d-4c8e-9a57-2d8f0e1b7c93"
V1 = {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}}
V2 = {"type": "object", "required": ["b"], "properties": {"b": {"type": "integer"}}}
ITEMS = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {"type": "object", "properties": {"quantity": {"minimum": 1}}},
        },
    },
}


@pytest.fixture
def versions(registry: LoadRegistry) -> SchemaRegistry:
    """A registry with ``Thing`` v1 and v2 and ``Order`` v1."""
    found, problems = registry({"Thing/v1.json": V1, "Thing/v2.json": V2,
                                "Order/v1.json": ORDER_SCHEMA, "Cart/v1.json": ITEMS})
    assert problems == []
    return found


def test_valid_message_passes_unchanged(versions: SchemaRegistry) -> None:
    """A body that satisfies the schema is returned as is."""
    message = Decoded("Order", None, {"order_id": UUID, "quantity": 2})

    result = validate(message, versions)

    assert result is message


def test_unknown_type_is_unknown_type(versions: SchemaRegistry) -> None:
    """A type with no schema is dead-lettered as unknown_type."""
    result = validate(Decoded("Nope", None, {}), versions)

    assert isinstance(result, DeadLetter)
    assert result.reason is Reason.UNKNOWN_TYPE
    assert "'Nope'" in result.error


def test_unknown_type_with_a_version_is_still_unknown_type(versions: SchemaRegistry) -> None:
    """Asking for a version of an unregistered type is unknown_type, not schema_invalid."""
    result = validate(Decoded("Nope", 3, {}), versions)

    assert isinstance(result, DeadLetter)
    assert result.reason is Reason.UNKNOWN_TYPE


def test_missing_version_names_the_known_versions(versions: SchemaRegistry) -> None:
    """A version the registry lacks is schema_invalid and lists the versions it has."""
    result = validate(Decoded("Thing", 9, {"b": 1}), versions)

    assert isinstance(result, DeadLetter)
    assert result.reason is Reason.SCHEMA_INVALID
    assert result.error == "Thing has no schema version 9 (known: 1, 2)"


def test_newest_version_applies_by_default(versions: SchemaRegistry) -> None:
    """Without a version the newest schema (v2) is used: a v1 body fails it."""
    v1_body = {"a": "x"}

    newest = validate(Decoded("Thing", None, v1_body), versions)
    explicit = validate(Decoded("Thing", 1, v1_body), versions)

    assert isinstance(newest, DeadLetter)
    assert newest.error.startswith("Thing v2: ")
    assert isinstance(explicit, Decoded)


def test_failure_names_the_pointer_and_the_keyword(versions: SchemaRegistry) -> None:
    """The error says which JSON pointer failed and which keyword it failed."""
    body = {"items": [{"quantity": 0}]}

    result = validate(Decoded("Cart", None, body), versions)

    assert isinstance(result, DeadLetter)
    assert result.reason is Reason.SCHEMA_INVALID
    assert result.error.startswith("Cart v1: /items/0/quantity: minimum: ")


def test_root_failure_points_at_the_root(versions: SchemaRegistry) -> None:
    """A failure of the whole body is reported at pointer ``/``."""
    result = validate(Decoded("Order", None, {"quantity": 1}), versions)

    assert isinstance(result, DeadLetter)
    assert "/: required: " in result.error


def test_pointer_escapes_slash_and_tilde(registry: LoadRegistry) -> None:
    """Property names with ``/`` and ``~`` are escaped in the pointer (RFC 6901)."""
    schema = {"properties": {"a/b~c": {"type": "integer"}}}
    found, _ = registry({"T/v1.json": schema})

    result = validate(Decoded("T", None, {"a/b~c": "x"}), found)

    assert isinstance(result, DeadLetter)
    assert "/a~1b~0c: type: " in result.error


@pytest.mark.parametrize(
    ("field", "value", "format_"),
    [("email", "not-an-email", "email"), ("order_id", "not-a-uuid", "uuid")],
)
def test_format_is_asserted(
    versions: SchemaRegistry, field: str, value: str, format_: str
) -> None:
    """``format`` is checked, not just annotated (email, uuid)."""
    body: dict[str, Any] = {"order_id": UUID, "quantity": 1, field: value}

    result = validate(Decoded("Order", None, body), versions)

    assert isinstance(result, DeadLetter)
    assert f"/{field}: format: " in result.error
    assert format_ in result.error


def test_date_time_format_is_asserted(registry: LoadRegistry) -> None:
    """A string that is not an RFC 3339 date-time fails ``format: date-time``."""
    found, _ = registry({"T/v1.json": {"type": "string", "format": "date-time"}})

    bad = validate(Decoded("T", None, "yesterday"), found)
    good = validate(Decoded("T", None, "2024-05-01T12:00:00Z"), found)

    assert isinstance(bad, DeadLetter)
    assert "/: format: " in bad.error
    assert isinstance(good, Decoded)


def test_errors_beyond_the_limit_are_elided(registry: LoadRegistry) -> None:
    """At most ``MAX_ERRORS`` errors are listed, then ``...``."""
    names = [f"p{i}" for i in range(MAX_ERRORS + 3)]
    schema = {"type": "object", "properties": {k: {"type": "integer"} for k in names}}
    found, _ = registry({"T/v1.json": schema})
    body = dict.fromkeys(names, "x")

    result = validate(Decoded("T", None, body), found)

    assert isinstance(result, DeadLetter)
    parts = result.error.split("; ")
    assert len(parts) == MAX_ERRORS + 1
    assert parts[-1] == "..."


def test_redos_pattern_is_linear(registry: LoadRegistry) -> None:
    """``^(a+)+$`` against 50,000 a's and a ``!`` simply fails (no backtracking stall)."""
    found, _ = registry({"T/v1.json": {"type": "string", "pattern": "^(a+)+$"}})

    result = validate(Decoded("T", None, "a" * 50_000 + "!"), found)

    assert isinstance(result, DeadLetter)
    assert result.reason is Reason.SCHEMA_INVALID
    assert ": pattern: " in result.error
