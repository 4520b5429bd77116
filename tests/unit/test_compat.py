"""Compatibility modes checked by ``check``: each break names file, line, field and why."""

from __future__ import annotations

from textwrap import dedent
from typing import Any

import pytest

from router.config.source import Document
from router.evolution.inlined import inline
from tests.unit.conftest import Check


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), *,
        closed: bool = True) -> dict[str, Any]:
    """An object schema; closed (additionalProperties: false) unless said otherwise."""
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


STRING = {"type": "string"}
NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}


def versions(*schemas: dict[str, Any], evolution: str) -> dict[str, Any]:
    """``schemas/T/v1.json``... and ``schemas/T/evolution.yaml``."""
    files: dict[str, Any] = {f"T/v{i}.json": s for i, s in enumerate(schemas, start=1)}
    files["T/evolution.yaml"] = dedent(evolution)
    return files


def test_new_required_field_breaks_backward_with_file_line_and_field(check: Check) -> None:
    """A field required in v2 that v1 messages may lack is refused at v2's required line."""
    v1 = obj({"a": STRING}, ("a",))
    v2 = obj({"a": STRING, "b": STRING}, ("a", "b"))

    problems = check(schemas={**versions(v1, v2, evolution="compatibility: backward\n")})

    assert problems == [
        "schemas/T/v2.json:11: not backward compatible with v1: field /b is required in v2 "
        "but v1 messages may lack it (make it optional or add a default upcaster)"]


def test_new_optional_field_of_a_closed_writer_is_backward_compatible(check: Check) -> None:
    """v1 is closed, so its messages never carry the field v2 adds."""
    v1 = obj({"a": STRING}, ("a",))
    v2 = obj({"a": STRING, "b": INTEGER}, ("a",))

    backward = check(schemas=versions(v1, v2, evolution="compatibility: backward\n"))
    full = check(schemas=versions(v1, v2, evolution="compatibility: full\n"))

    assert backward == []
    assert full == ["schemas/T/v2.json:7: not forward compatible with v1: field /b is not "
                    "allowed in v1 but v2 messages may carry it"]


def test_new_field_of_an_open_writer_breaks_backward(check: Check) -> None:
    """An open v1 may already carry the new name with any value (Confluent's rule)."""
    v1 = obj({"a": STRING}, ("a",), closed=False)
    v2 = obj({"a": STRING, "b": INTEGER}, ("a",), closed=False)

    [problem] = check(schemas=versions(v1, v2, evolution="compatibility: backward\n"))

    assert problem.startswith("schemas/T/v2.json:")
    assert "field /b is new in v2, but v1 messages may already carry it with any value" \
        in problem


@pytest.mark.parametrize(("old", "new", "broken"), [
    (INTEGER, NUMBER, False),  # integer is a number: widening
    (NUMBER, INTEGER, True),
    ({"type": ["string", "null"]}, STRING, True),
    (STRING, {"type": ["string", "null"]}, False),
    ({"type": "integer", "minimum": 1}, {"type": "integer", "minimum": 0}, False),
    ({"type": "integer", "minimum": 0}, {"type": "integer", "minimum": 1}, True),
    ({"type": "integer", "exclusiveMinimum": 0}, {"type": "integer", "minimum": 0}, False),
    ({"type": "number", "maximum": 10}, {"type": "number", "exclusiveMaximum": 10}, True),
    ({"type": "string", "maxLength": 5}, {"type": "string", "maxLength": 10}, False),
    ({"type": "string", "maxLength": 10}, {"type": "string", "maxLength": 5}, True),
    ({"type": "string", "minLength": 1}, {"type": "string", "minLength": 2}, True),
    ({"type": "string", "pattern": "^a"}, {"type": "string", "pattern": "^b"}, True),
    (STRING, {"type": "string", "format": "email"}, True),
    ({"enum": ["a", "b"]}, {"enum": ["a", "b", "c"]}, False),
    ({"enum": ["a", "b", "c"]}, {"enum": ["a", "b"]}, True),
    (STRING, {"enum": ["a"]}, True),
    ({"const": 5}, {"type": "integer", "minimum": 5}, False),
    ({"type": "number", "multipleOf": 0.1}, {"type": "number", "multipleOf": 0.01}, False),
    ({"type": "number", "multipleOf": 0.01}, {"type": "number", "multipleOf": 0.1}, True),
    ({"type": "array", "items": INTEGER}, {"type": "array", "items": NUMBER}, False),
    ({"type": "array", "items": NUMBER}, {"type": "array", "items": INTEGER}, True),
    ({"type": "array", "items": STRING}, {"type": "array", "items": STRING, "minItems": 1},
     True),
    (obj({"x": INTEGER}, ("x",)), obj({"x": NUMBER}, ("x",)), False),
    (obj({"x": NUMBER}, ("x",)), obj({"x": INTEGER}, ("x",)), True),
    ({"anyOf": [STRING, INTEGER]}, {"anyOf": [STRING, NUMBER]}, False),
    ({"anyOf": [STRING, INTEGER]}, STRING, True),
    ({"oneOf": [STRING, INTEGER]}, {"oneOf": [STRING, NUMBER, {"type": "null"}]}, False),
    ({"oneOf": [STRING, {"minLength": 1}]}, {"oneOf": [{"minLength": 1}, STRING]}, True),
    ({"not": STRING}, {"not": INTEGER}, True),
])
def test_field_changes_are_judged_as_set_inclusion(check: Check, old: Any, new: Any,
                                                   broken: bool) -> None:
    """Backward: every value v1 allows must be valid in v2 (conservative when unsure)."""
    v1, v2 = obj({"f": old}, ("f",)), obj({"f": new}, ("f",))

    problems = check(schemas=versions(v1, v2, evolution="compatibility: backward\n"))

    assert bool(problems) is broken, problems
    assert all("field /f" in p and p.startswith("schemas/T/v2.json:") for p in problems)


def test_field_made_optional_breaks_forward_only(check: Check) -> None:
    """Forward: v1's consumers need what v2 may no longer send; backward is fine."""
    v1 = obj({"a": STRING, "b": STRING}, ("a", "b"))
    v2 = obj({"a": STRING, "b": STRING}, ("a",))

    forward = check(schemas=versions(v1, v2, evolution="compatibility: forward\n"))
    backward = check(schemas=versions(v1, v2, evolution="compatibility: backward\n"))
    full = check(schemas=versions(v1, v2, evolution="compatibility: full\n"))

    assert forward == ["schemas/T/v2.json:1: not forward compatible with v1: field /b is "
                       "required in v1 but v2 messages may lack it"]
    assert backward == []
    assert full == forward


def test_field_removed_from_an_open_schema_breaks_forward(check: Check) -> None:
    """An open v2 that stops declaring a field may send it with any value to v1's readers."""
    v1 = obj({"a": STRING, "b": STRING}, ("a",), closed=False)
    v2 = obj({"a": STRING}, ("a",), closed=False)

    [problem] = check(schemas=versions(v1, v2, evolution="compatibility: forward\n"))

    assert problem == ("schemas/T/v2.json:1: not forward compatible with v1: field /b is "
                       "declared in v1 but not in v2, whose messages may carry it with any "
                       "value (keep declaring it, or close v2 with additionalProperties: false)")


def test_transitive_modes_check_every_earlier_version(check: Check) -> None:
    """backward compares v3 with v2 only; backward_transitive with v1 and v2."""
    v1 = obj({"a": STRING}, ("a",))
    v2 = obj({"a": STRING}, ("a",))
    v3 = obj({"a": STRING, "b": STRING}, ("a", "b"))

    plain = check(schemas=versions(v1, v2, v3, evolution="compatibility: backward\n"))
    transitive = check(schemas=versions(v1, v2, v3,
                                        evolution="compatibility: backward_transitive\n"))
    forward = check(schemas=versions(v3, v2, v1,
                                     evolution="compatibility: forward_transitive\n"))
    full = check(schemas=versions(v1, v2, v3, evolution="compatibility: full_transitive\n"))

    assert [p.split(": ", 2)[1] for p in plain] == ["not backward compatible with v2"]
    assert [p.split(": ", 2)[1] for p in transitive] == ["not backward compatible with v1",
                                                         "not backward compatible with v2"]
    assert [p.split(": ", 2)[::2][0].split(":")[0] for p in forward] == [
        "schemas/T/v2.json", "schemas/T/v3.json"]
    assert all("not forward compatible with v1: field /b is required" in p for p in forward)
    assert len(full) == 4  # v3 against v1 and v2, each both ways


def test_ref_into_a_shared_file_is_followed(check: Check) -> None:
    """A narrowed definition in schemas/_common breaks every type that uses it."""
    common_v1 = {"$defs": {"qty": {"type": "integer", "minimum": 0}}}
    common_v2 = {"$defs": {"qty": {"type": "integer", "minimum": 1}}}
    v1 = obj({"q": {"$ref": "../_common/v1.json#/$defs/qty"}}, ("q",))
    v2 = obj({"q": {"$ref": "../_common/v2.json#/$defs/qty"}}, ("q",))

    problems = check(schemas={"_common/v1.json": common_v1, "_common/v2.json": common_v2,
                              **versions(v1, v2, evolution="compatibility: backward\n")})

    assert problems == ["schemas/T/v2.json:4: not backward compatible with v1: field /q: "
                        "minimum 1 in v2 is narrower than in v1 (0)"]


def test_global_default_mode_applies_unless_a_type_says_otherwise(check: Check) -> None:
    """schemas/evolution.yaml sets the default; a type's own file overrides it."""
    v1 = obj({"a": STRING}, ("a",))
    v2 = obj({"a": STRING, "b": STRING}, ("a", "b"))
    files = {"A/v1.json": v1, "A/v2.json": v2, "B/v1.json": v1, "B/v2.json": v2,
             "B/evolution.yaml": "compatibility: none\n",
             "evolution.yaml": "compatibility: backward\n"}

    problems = check(schemas=files)

    assert [p.split(":", 1)[0] for p in problems] == ["schemas/A/v2.json"]


def test_without_any_mode_nothing_is_checked(check: Check) -> None:
    """No evolution.yaml anywhere: compatibility none, as before."""
    v1 = obj({"a": STRING}, ("a",))
    v2 = obj({"b": INTEGER}, ("b",))

    assert check(schemas={"T/v1.json": v1, "T/v2.json": v2}) == []


@pytest.mark.parametrize(("evolution", "expected"), [
    ("compatibility: sideways\n", "schemas/T/evolution.yaml:1: 'compatibility' must be one of "
                                  "none, backward, backward_transitive, forward, "
                                  "forward_transitive, full, full_transitive, got 'sideways'"),
    ("compatibility: none\nbogus: 1\n", "schemas/T/evolution.yaml:2: unknown key 'bogus' in "
                                        "evolution.yaml (known: compatibility, upcasters)"),
    ("upcasters:\n  - from: 2\n    steps: []\n",
     "schemas/T/evolution.yaml:2: no step from v2: it must be a version that has a newer one "
     "(versions: 1, 2)"),
    ("upcasters:\n  - from: 1\n    steps:\n      - shout: a\n",
     "schemas/T/evolution.yaml:4: a step is one of rename, default, drop, move, function "
     "(a mapping with one key)"),
    ("upcasters:\n  - from: 1\n    steps:\n      - rename: {from: a, to: b.c}\n",
     "schemas/T/evolution.yaml:4: rename keeps the field in its object: 'to' is a name, "
     "not a path (use move)"),
    ("upcasters:\n  - from: 1\n    steps:\n      - drop: 'a..b'\n",
     "schemas/T/evolution.yaml:4: a field path must be a dotted name like customer.id, "
     "got 'a..b'"),
    ("upcasters:\n  - from: 1\n    steps:\n      - function: no_such_module_xyz:f\n",
     "schemas/T/evolution.yaml:4: function 'no_such_module_xyz:f': cannot import "
     "'no_such_module_xyz': No module named 'no_such_module_xyz'"),
    ("upcasters:\n  - from: 1\n    steps:\n      - function: json:no_such_function\n",
     "schemas/T/evolution.yaml:4: function 'json:no_such_function': 'json' has no function "
     "'no_such_function'"),
])
def test_bad_evolution_file_is_reported_with_line(check: Check, evolution: str,
                                                  expected: str) -> None:
    """Mode, keys, versions, steps and function targets are checked at load."""
    v1 = obj({"a": STRING}, ("a",))

    assert check(schemas=versions(v1, v1, evolution=evolution)) == [expected]


def test_evolution_file_without_versions_is_reported(check: Check) -> None:
    """An evolution.yaml next to no schema version names itself."""
    problems = check(schemas={"Ghost/evolution.yaml": "compatibility: backward\n"})

    assert problems == ["schemas/Ghost/evolution.yaml: no schema versions for message type "
                        "'Ghost' next to this file"]


def test_inlining_follows_id_base_changes() -> None:
    """A ``$ref`` under an ``$id`` names the embedded resource, not a file of the same name."""
    schema = {"$id": "https://example.com/x/",
              "$defs": {"m": {"$id": "money.json", "type": "integer"}},
              "properties": {"a": {"$ref": "money.json"},
                             "b": {"$ref": "https://example.com/x/money.json"},
                             "c": {"$ref": "mcp://schemas/T/money.json"}}}
    docs = {"T/v1.json": Document("schemas/T/v1.json", schema),
            "T/money.json": Document("schemas/T/money.json", {"type": "string"})}

    inlined = inline("T/v1.json", docs).schema

    assert inlined["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"},
                                     "c": {"type": "string"}}


def test_a_version_whose_id_ref_narrows_is_refused(check: Check) -> None:
    """Compatibility is checked through ``$id`` references as through file references."""
    def version(kind: str) -> dict[str, Any]:
        return {"$id": f"https://example.com/t/{kind}/",
                "$defs": {"q": {"$id": "q", "type": kind}},
                "type": "object", "properties": {"q": {"$ref": "q"}}}

    problems = check(schemas={"T/v1.json": version("number"), "T/v2.json": version("integer"),
                              "T/evolution.yaml": "compatibility: backward\n"})

    assert any("v2" in p and "/q" in p and "integer" in p for p in problems), problems
