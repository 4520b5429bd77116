"""The schema registry and what ``check`` reports about schemas/."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.outcome import DeadLetter, Decoded
from router.schemas import load_registry
from router.validate import validate
from tests.unit.conftest import ORDER_SCHEMA, LoadRegistry

COMMON = {"$defs": {"quantity": {"type": "integer", "minimum": 1}}}


def test_versions_are_registered_ascending(registry: LoadRegistry) -> None:
    """``T/v1.json`` .. ``T/v10.json`` are versions 1..10 in numeric order."""
    files = {f"T/v{n}.json": {"type": "object"} for n in (10, 2, 1)}

    found, problems = registry(files)

    assert problems == []
    assert [v.version for v in found.types["T"]] == [1, 2, 10]


def test_schema_that_is_not_json_reports_file_and_line(registry: LoadRegistry) -> None:
    """A schema file with a JSON syntax error is reported as FILE:LINE."""
    text = '{\n  "type": "object",\n  oops\n}\n'

    found, problems = registry({"T/v1.json": text})

    assert len(problems) == 1
    assert problems[0].startswith("schemas/T/v1.json:3: not valid JSON")
    assert "T" not in found


def test_nan_in_a_schema_is_not_json(registry: LoadRegistry) -> None:
    """``NaN`` (which Python's json accepts) is refused in a schema file."""
    _, problems = registry({"T/v1.json": '{"minimum": NaN}'})

    assert problems == ["schemas/T/v1.json: not valid JSON: NaN is not JSON"]


def test_schema_that_is_not_an_object_is_reported(registry: LoadRegistry) -> None:
    """A JSON array is not a schema."""
    _, problems = registry({"T/v1.json": "[1]"})

    assert problems == ["schemas/T/v1.json:1: a schema must be a JSON object"]


def test_invalid_json_schema_is_reported_with_file(registry: LoadRegistry) -> None:
    """``{"type": 12}`` fails the meta-schema; the problem names the file, line and place."""
    _, problems = registry({"T/v1.json": '{\n  "type": 12\n}\n'})

    assert len(problems) == 1
    assert problems[0].startswith("schemas/T/v1.json:2: not a valid JSON Schema at /type: ")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("https://example.com/x.json", "remote $ref 'https://example.com/x.json' is not allowed"),
        ("../../etc/x.json", "$ref '../../etc/x.json' escapes schemas/"),
        ("../_common/nope.json", "$ref '../_common/nope.json': no such file in schemas/"),
    ],
)
def test_bad_ref_is_reported(registry: LoadRegistry, ref: str, expected: str) -> None:
    """A remote, escaping or dangling ``$ref`` is reported with file and line, not raised."""
    schema = {"properties": {"a": {"$ref": ref}}}  # "$ref" is on line 4 of the written file

    _, problems = registry({"T/v1.json": schema})

    assert any(p.startswith(f"schemas/T/v1.json:4: {expected}") for p in problems)


def test_unknown_format_is_reported(registry: LoadRegistry) -> None:
    """``"format": "bogus"`` is refused at load (formats are asserted, so must be known)."""
    _, problems = registry({"T/v1.json": '{\n  "type": "string",\n  "format": "bogus"\n}\n'})

    assert len(problems) == 1
    assert problems[0].startswith("schemas/T/v1.json")
    assert "bogus" in problems[0]


def test_lookbehind_pattern_is_reported(registry: LoadRegistry) -> None:
    """A ``pattern`` the linear regex engine cannot run (lookbehind) is refused at load."""
    schema = '{\n  "type": "string",\n  "pattern": "(?<=a)b"\n}\n'

    found, problems = registry({"T/v1.json": schema})

    assert len(problems) == 1
    assert problems[0].startswith("schemas/T/v1.json")
    assert "(?<=a)b" in problems[0]
    assert "T" not in found


def test_ref_to_a_shared_file_resolves(registry: LoadRegistry) -> None:
    """A ``$ref`` into ``schemas/_common`` works, and the shared file is no message type."""
    schema = {"properties": {"quantity": {"$ref": "../_common/defs.json#/$defs/quantity"}}}

    found, problems = registry({"T/v1.json": schema, "_common/defs.json": COMMON})
    result = validate(Decoded("T", None, {"quantity": 0}), found)

    assert problems == []
    assert set(found.types) == {"T"}
    assert isinstance(result, DeadLetter)
    assert "/quantity: minimum: " in result.error


def test_shared_file_is_checked_too(registry: LoadRegistry) -> None:
    """A broken shared file under ``_common`` is reported even if nothing refers to it."""
    _, problems = registry({"_common/defs.json": {"$defs": {"x": {"type": 12}}}})

    assert len(problems) == 1
    assert problems[0].startswith("schemas/_common/defs.json")


def test_non_json_file_in_schemas_is_reported(registry: LoadRegistry) -> None:
    """Only ``*.json`` belongs in schemas/; a stray file is named."""
    _, problems = registry({"T/v1.json": ORDER_SCHEMA, "T/notes.txt": "hello"})

    assert problems == ["schemas/T/notes.txt: not a schema: only *.json files and "
                        "evolution.yaml belong in schemas/"]


def test_missing_schemas_directory_is_reported(tmp_path: Path) -> None:
    """A configuration without schemas/ gets one problem, not an exception."""
    _, problems = load_registry(tmp_path / "nowhere", "schemas")

    assert [str(p) for p in problems] == ["schemas: schemas directory is missing"]
