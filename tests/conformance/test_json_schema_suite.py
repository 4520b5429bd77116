"""The official JSON-Schema-Test-Suite, draft 2020-12, through the router's own code.

Each case's schema is written as the registry file ``schemas/Case/v1.json``
and loaded by ``load_registry`` (meta-schema check, ``$ref`` check, compile);
each test's instance is encoded as a message body and goes through
``decode`` and ``validate`` as a delivery would.  The suite's remote
documents (``remotes/``, retrieved as ``http://localhost:1234/...``) are
served from the vendored directory through ``mirrors``: nothing touches the
network.  Vendored in tests/data/json-schema-test-suite (see its README).

Every case passes but the documented deviations below, run as strict xfail
(one that starts to pass fails the run, so the list stays true).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from router.config.schema_loading import load_registry
from router.config.schemas import FORMAT_KEYWORD, SchemaRegistry
from router.core.decode import decode
from router.core.envelope import Envelope, Properties
from router.core.outcome import Decoded
from router.core.validate import validate

SUITE = "JSON-Schema-Test-Suite draft2020-12"
DATA = Path(__file__).parents[1] / "data" / "json-schema-test-suite"
CASES = DATA / "tests" / "draft2020-12"
REMOTES = {"http://localhost:1234/": DATA / "remotes"}

_ANNOTATION = ("format is asserted by design (the Format-Assertion vocabulary's behaviour); "
               'a schema saying "x-mcp-format": "annotation" gets the default behaviour '
               "(test_format_as_annotation)")
_UNKNOWN = ("an unknown format is refused when the schema is loaded, so that a misspelt "
            "format cannot silently accept everything; with \"x-mcp-format\": \"annotation\" "
            "it is ignored (test_format_as_annotation)")

#: (file, case description, test description or "*" for all) -> why the router differs there.
DEVIATIONS: dict[tuple[str, str, str], str] = {
    **{("format.json", f"{name} format", f"invalid {name} string is only an annotation by "
                                         "default"): _ANNOTATION for name in (
        "email", "idn-email", "regex", "ipv4", "ipv6", "idn-hostname", "hostname", "date",
        "date-time", "time", "json-pointer", "relative-json-pointer", "iri", "iri-reference",
        "uri", "uri-reference", "uri-template", "uuid", "duration")},
    ("optional/format/unknown.json", "unknown format", "*"): _UNKNOWN,
}


def _files() -> list[str]:
    return sorted(p.relative_to(CASES).as_posix() for p in CASES.rglob("*.json"))


def _cases(files: list[str]) -> Iterator[Any]:
    for file in files:
        for index, case in enumerate(json.loads((CASES / file).read_text())):
            for test in case["tests"]:
                why = DEVIATIONS.get((file, case["description"], test["description"])) \
                    or DEVIATIONS.get((file, case["description"], "*"))
                marks = [pytest.mark.xfail(reason=why, strict=True)] if why else []
                yield pytest.param(file, index, test,
                                   id=f"{file}::{case['description']}::{test['description']}",
                                   marks=marks)


Registry = Callable[[str, int, bool], tuple[SchemaRegistry, list[str]]]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """Each case's schema loaded once as ``schemas/Case/v1.json``, by (file, index, annotate)."""
    loaded: dict[tuple[str, int, bool], tuple[SchemaRegistry, list[str]]] = {}

    def load(file: str, index: int, annotate: bool) -> tuple[SchemaRegistry, list[str]]:
        key = (file, index, annotate)
        if key not in loaded:
            schema = json.loads((CASES / file).read_text())[index]["schema"]
            if annotate and isinstance(schema, dict):
                schema = {**schema, FORMAT_KEYWORD: "annotation"}
            root = tmp_path_factory.mktemp("case") / "schemas"
            (root / "Case").mkdir(parents=True)
            (root / "Case" / "v1.json").write_text(json.dumps(schema))
            # Only a schema that names localhost:1234 can reach a remote (no relative
            # reference changes the authority): the others load without them, faster.
            remote = "localhost:1234" in json.dumps(schema)
            found, problems = load_registry(root, mirrors=REMOTES if remote else None)
            loaded[key] = found, [str(p) for p in problems]
        return loaded[key]

    return load


def _outcome(registry: SchemaRegistry, data: Any) -> bool:
    body = json.dumps(data, ensure_ascii=False).encode()
    decoded = decode(Envelope(body, Properties(type="Case", content_type="application/json")))
    assert isinstance(decoded, Decoded), decoded
    return isinstance(validate(decoded, registry), Decoded)


@pytest.mark.conformance(SUITE)
@pytest.mark.parametrize(("file", "index", "test"), list(_cases(_files())))
def test_suite_case(registry: Registry, file: str, index: int, test: dict[str, Any]) -> None:
    """The router loads the case's schema and accepts exactly the instances it calls valid."""
    found, problems = registry(file, index, False)

    assert problems == []
    assert _outcome(found, test["data"]) is test["valid"]


_FORMAT_FILES = ["format.json", "optional/format/unknown.json"]


@pytest.mark.conformance(f"{SUITE}, format cases with \"x-mcp-format\": \"annotation\"")
@pytest.mark.parametrize(("file", "index", "test"),
                         [pytest.param(*p.values, id=p.id) for p in _cases(_FORMAT_FILES)])
def test_format_as_annotation(registry: Registry, file: str, index: int,
                              test: dict[str, Any]) -> None:
    """With ``"x-mcp-format": "annotation"`` the format cases pass as the suite's default has it."""
    found, problems = registry(file, index, True)

    assert problems == []
    assert _outcome(found, test["data"]) is test["valid"]


def test_the_vendored_suite_is_complete() -> None:
    """Every file of draft2020-12 (and its optional format and bignum files) is here to run."""
    files = _files()

    assert len([f for f in files if "/" not in f]) == 46
    assert len([f for f in files if f.startswith("optional/format/")]) == 21
    assert "optional/bignum.json" in files
    assert {file for file, _, _ in DEVIATIONS} <= set(files)
