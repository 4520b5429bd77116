"""The schema registry and what ``check`` reports about schemas/."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config.schema_loading import load_registry
from router.core.outcome import DeadLetter, Decoded
from router.core.validate import validate
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


# --- $ref resolution: $id, embedded resources, meta-schemas, mirrors ----------------------

EMBEDDED: dict[str, object] = {
    "$defs": {
        "money": {"$id": "https://example.com/money.json", "type": "number", "minimum": 0},
        "code": {"$id": "urn:uuid:deadbeef-1234-ffff-ffff-4321feebdaed",
                 "$defs": {"c": {"type": "string", "maxLength": 3}}},
    },
    "properties": {
        "total": {"$ref": "https://example.com/money.json"},
        "currency": {"$ref": "urn:uuid:deadbeef-1234-ffff-ffff-4321feebdaed#/$defs/c"},
    },
}


def test_absolute_refs_to_embedded_resources_resolve(registry: LoadRegistry) -> None:
    """A ``$ref`` naming an embedded resource's ``$id`` (URL or urn:uuid) resolves in the file."""
    found, problems = registry({"T/v1.json": EMBEDDED})

    assert problems == []
    assert isinstance(validate(Decoded("T", None, {"total": 1, "currency": "EUR"}), found),
                      Decoded)
    assert isinstance(validate(Decoded("T", None, {"total": -1}), found), DeadLetter)
    assert isinstance(validate(Decoded("T", None, {"currency": "EURO"}), found), DeadLetter)


def test_relative_ref_after_a_base_change_resolves(registry: LoadRegistry) -> None:
    """``"$ref": "node"`` under ``"$id": "https://example.com/tree/"`` names ``.../tree/node``."""
    schema = {"$id": "https://example.com/tree/", "properties": {"n": {"$ref": "node"}},
              "$defs": {"node": {"$id": "node", "type": "integer"}}}

    found, problems = registry({"T/v1.json": schema})

    assert problems == []
    assert isinstance(validate(Decoded("T", None, {"n": "x"}), found), DeadLetter)


def test_a_resource_of_another_file_is_named_by_its_id(registry: LoadRegistry) -> None:
    """A file's ``$id`` names it for every other file: a vendored schema keeps its URL."""
    files = {"_vendor/money.json": {"$id": "https://schemas.example.com/money", "minimum": 0},
             "T/v1.json": {"properties": {"m": {"$ref": "https://schemas.example.com/money"}}}}

    found, problems = registry(files)

    assert problems == []
    assert isinstance(validate(Decoded("T", None, {"m": -1}), found), DeadLetter)


def test_a_ref_to_a_standard_meta_schema_resolves_locally(registry: LoadRegistry) -> None:
    """``$ref`` to the 2020-12 or draft-07 meta-schema is served from the local copy."""
    schema = {"properties": {"s": {"$ref": "https://json-schema.org/draft/2020-12/schema"},
                             "d": {"$ref": "http://json-schema.org/draft-07/schema#"}}}

    found, problems = registry({"T/v1.json": schema})

    assert problems == []
    assert isinstance(validate(Decoded("T", None, {"s": {"type": "string"}}), found), Decoded)
    assert isinstance(validate(Decoded("T", None, {"s": {"type": 12}}), found), DeadLetter)
    assert isinstance(validate(Decoded("T", None, {"d": {"minimum": "x"}}), found), DeadLetter)


def test_remote_ref_under_a_changed_base_is_refused(registry: LoadRegistry) -> None:
    """A relative ``$ref`` that the ``$id`` makes remote is refused, saying what it names."""
    schema = {"$id": "https://example.com/a/", "properties": {"x": {"$ref": "b.json"}}}

    _, problems = registry({"T/v1.json": schema})

    assert problems == ["schemas/T/v1.json:5: remote $ref 'b.json' (that is "
                        "'https://example.com/a/b.json') is not allowed: refer to files inside "
                        "schemas/ or to a resource they identify by $id"]


def test_unknown_meta_schema_is_reported_with_its_file(registry: LoadRegistry) -> None:
    """A ``$schema`` that is neither standard nor a file in schemas/ names the file and line."""
    _, problems = registry({"T/v1.json": {"$schema": "https://example.com/my-meta"}})

    assert problems == ["schemas/T/v1.json:2: meta-schema 'https://example.com/my-meta' is "
                        "neither a standard one nor a file in schemas/"]


def test_mirrors_serve_resources_from_a_local_directory(tmp_path: Path) -> None:
    """``mirrors`` maps a URI prefix to a directory: its files resolve as if retrieved there."""
    (tmp_path / "remote" / "sub").mkdir(parents=True)
    (tmp_path / "remote" / "sub" / "int.json").write_text('{"type": "integer"}')
    (tmp_path / "schemas" / "T").mkdir(parents=True)
    (tmp_path / "schemas" / "T" / "v1.json").write_text(
        '{"$ref": "https://remote.example/sub/int.json"}')

    found, problems = load_registry(tmp_path / "schemas", "schemas",
                                    mirrors={"https://remote.example/": tmp_path / "remote"})

    assert problems == []
    assert isinstance(validate(Decoded("T", None, "x"), found), DeadLetter)
    assert isinstance(validate(Decoded("T", None, 3), found), Decoded)


@pytest.mark.parametrize(("mode", "valid"), [("assertion", False), ("annotation", True)])
def test_format_assertion_can_be_turned_off_per_schema(registry: LoadRegistry, mode: str,
                                                       valid: bool) -> None:
    """``"x-mcp-format": "annotation"`` makes ``format`` an annotation in that schema only."""
    files = {"T/v1.json": {"x-mcp-format": mode, "format": "email"},
             "U/v1.json": {"format": "email"}}

    found, problems = registry(files)

    assert problems == []
    assert isinstance(validate(Decoded("T", None, "not an address"), found), Decoded) is valid
    assert isinstance(validate(Decoded("U", None, "not an address"), found), DeadLetter)


def test_format_mode_must_be_known(registry: LoadRegistry) -> None:
    """``x-mcp-format`` other than assertion/annotation is reported at its line."""
    _, problems = registry({"T/v1.json": {"x-mcp-format": "off"}})

    assert problems == ['schemas/T/v1.json:2: x-mcp-format must be "assertion" or '
                        "\"annotation\", got 'off'"]
