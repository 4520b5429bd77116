"""The official AsyncAPI parser (``@asyncapi/parser`` under Node) reads ``mcp-router asyncapi``.

``tests/asyncapi/check.js`` parses each document with the parser, with JSON
Schema 2019-09 and 2020-12 schema parsers registered (it ships draft-07
only), and prints its diagnostics.  Every document must parse with no error
and no warning.  Node and the packages (``npm ci --prefix tests/asyncapi``)
come from .ci/run; without them the tests skip, and fail when ``CI`` is set.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from router.config.configuration import load_config
from router.tools.asyncapi import asyncapi_document
from tests.unit.conftest import BASE_TOPOLOGY
from tests.unit.test_asyncapi import RICH_SCHEMAS, RICH_TOPOLOGY

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "tests" / "asyncapi"
SUITE = "AsyncAPI 3.1.0, @asyncapi/parser 3.6.6"
URL = "amqp://guest:guest@127.0.0.1:5672/"

#: A registry with every kind of reference the router resolves, and a draft-07 file.
REFERENCES: dict[str, Any] = {
    "_vendor/money.json": {"$id": "https://schemas.example.com/money", "minimum": 0},
    "Legacy/v1.json": {"$schema": "http://json-schema.org/draft-07/schema#",
                       "definitions": {"n": {"type": "integer"}},
                       "properties": {"n": {"$ref": "#/definitions/n", "minimum": 1}}},
    "T/v1.json": {
        "$defs": {"code": {"$id": "urn:uuid:deadbeef-1234-ffff-ffff-4321feebdaed",
                           "$defs": {"c": {"$anchor": "c", "maxLength": 3}}},
                  "tree": {"$id": "https://example.com/tree/",
                           "properties": {"n": {"$ref": "node"}},
                           "$defs": {"node": {"$id": "node", "type": "integer"}}}},
        "properties": {"m": {"$ref": "https://schemas.example.com/money"},
                       "c": {"$ref": "urn:uuid:deadbeef-1234-ffff-ffff-4321feebdaed#c"},
                       "t": {"$ref": "https://example.com/tree/"},
                       "p": {"prefixItems": [{"type": "string"}], "items": False}},
    },
}


def _parse(documents: dict[str, dict[str, Any]], tmp: Path) -> dict[str, dict[str, Any]]:
    """What the parser says of each document, by name."""
    node = shutil.which("node")
    if node is None or not (CHECKER / "node_modules" / "@asyncapi" / "parser").is_dir():
        missing = "node" if node is None else "the npm packages (npm ci --prefix tests/asyncapi)"
        if os.environ.get("CI"):
            pytest.fail(f"the AsyncAPI parser check needs {missing}: .ci/run installs it")
        pytest.skip(f"the AsyncAPI parser check needs {missing}")
    files = {}
    for name, document in documents.items():
        files[name] = tmp / f"{name}.json"
        files[name].write_text(json.dumps(document))
    result = subprocess.run([node, str(CHECKER / "check.js"), *map(str, files.values())],  # noqa: S603 -- our own script and files
                            capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr
    said = [json.loads(line) for line in result.stdout.splitlines()]
    return {name: next(s for s in said if s["file"] == str(file)) for name, file in files.items()}


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The example configuration's document and two richer ones, as written by the router."""
    def written(topology: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
        root = tmp_path_factory.mktemp("config")
        (root / "topology.yaml").write_text(json.dumps(topology))
        for rel, schema in schemas.items():
            (root / "schemas" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "schemas" / rel).write_text(schema if isinstance(schema, str)
                                                else json.dumps(schema))
        return asyncapi_document(load_config(root), amqp_url=URL)

    return {"example": asyncapi_document(load_config(ROOT), amqp_url=URL),
            "rich": written(RICH_TOPOLOGY, RICH_SCHEMAS),
            "references": written(BASE_TOPOLOGY, REFERENCES)}


@pytest.fixture(scope="module")
def parsed(documents: dict[str, dict[str, Any]],
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The parser's verdict on each of ``documents``."""
    return _parse(documents, tmp_path_factory.mktemp("asyncapi"))


@pytest.mark.conformance(SUITE)
@pytest.mark.parametrize("name", ["example", "rich", "references"])
def test_the_official_parser_reads_the_document_cleanly(
        parsed: dict[str, dict[str, Any]], name: str) -> None:
    """``@asyncapi/parser`` parses the document with 0 errors and 0 warnings."""
    verdict = parsed[name]

    assert verdict["parsed"], verdict["diagnostics"]
    assert (verdict["errors"], verdict["warnings"]) == (0, 0), verdict["diagnostics"]


def test_the_parser_check_is_not_vacuous(documents: dict[str, dict[str, Any]],
                                         tmp_path: Path) -> None:
    """A payload that is no valid JSON Schema 2020-12, or a wrong channel, is an error."""
    bad_schema = copy.deepcopy(documents["example"])
    payload = bad_schema["components"]["messages"]["OrderCreated.v2"]["payload"]
    payload["schema"]["properties"]["total_amount"] = {"type": 12}
    bad_channel = copy.deepcopy(documents["example"])
    bad_channel["operations"]["send.OrderCreated"]["channel"] = {"$ref": "#/channels/nowhere"}

    verdicts = _parse({"schema": bad_schema, "channel": bad_channel}, tmp_path)

    assert verdicts["schema"]["errors"] >= 1
    assert "not a valid JSON Schema 2020-12" in json.dumps(verdicts["schema"]["diagnostics"])
    assert verdicts["channel"]["errors"] >= 1


def test_payloads_are_labelled_2020_12(documents: dict[str, dict[str, Any]]) -> None:
    """Every payload of the example says JSON Schema 2020-12, the registry's dialect."""
    formats = {m["payload"]["schemaFormat"]
               for m in documents["example"]["components"]["messages"].values()}

    assert formats == {"application/schema+json;version=2020-12"}
