"""Loading the JSON Schema registry: ``schemas/<MessageType>/v<N>.json``, compiled once.

The result is a frozen ``router.config.schemas.SchemaRegistry``.

Every ``*.json`` file below ``schemas/`` is a resource that ``$ref`` may name
(relative to the referring file, or by its ``$id``); files called
``v<N>.json`` directly inside a type's folder are also message schemas,
version ``N``.  References resolve as JSON Schema 2020-12 says
(``router.evolution.refs``): against the base URI each ``$id`` sets, to embedded
resources (``urn:uuid:`` ids too) and to the standard meta-schemas, shipped
locally.  ``evolution.yaml``
files (in ``schemas/`` and in a type's folder) declare how types evolve
(``router.config.lineage``); nothing else belongs there.

Compilation uses jsonschema-rs (about 1 µs per message here, against about
90 µs for python-jsonschema) with:

* a registry holding only our files and a retriever that refuses everything
  else, so a ``$ref`` outside ``schemas/`` never touches the network;
* ``format`` asserted (the Format-Assertion vocabulary's behaviour), and an
  unknown ``format`` refused at load, unless the schema's root says
  ``"x-mcp-format": "annotation"``;
* the linear-time regex engine for ``pattern``, so a schema such as
  ``^(a+)+$`` cannot stall the router (no backtracking).

python-jsonschema checks each schema against its meta-schema first, because
its errors name the offending location precisely.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag

import jsonschema
import jsonschema.validators
import jsonschema_rs

from router.config.lineage import EVOLUTION_FILE
from router.config.schema_evolution import load_evolution
from router.config.schemas import FORMAT_KEYWORD, SchemaRegistry, SchemaVersion
from router.config.sensitive_marks import find_marks
from router.config.source import Document, load_json
from router.errors import Problem
from router.evolution.inlined import BASE_URI
from router.evolution.refs import META_SCHEMAS, Resources, walk

__all__ = ["load_registry"]
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.json$")


def _refuse_retrieval(uri: str) -> Any:
    raise ValueError(f"refusing to fetch {uri}: $ref may only name files inside schemas/")


@dataclass(frozen=True, slots=True)
class _Placed:
    """A schema file and the directory its relative references must stay inside."""

    file: Path
    root: Path

    def escapes(self, ref: str) -> bool:
        """Whether the file a relative ``$ref`` names lies outside ``root``."""
        target = (self.file.parent / urldefrag(ref)[0]).resolve()
        return not target.is_relative_to(self.root.resolve())


def _check_refs(doc: Document, found: Resources, placed: _Placed, known: set[str],
                problems: list[Problem]) -> bool:
    """Report references to unknown resources, escaping and dangling ones; True if none."""
    before = len(problems)
    for ref in found.references:
        if ref.resource in known or ref.resource in META_SCHEMAS:
            continue
        if ref.path[-1] == "$schema":
            problems.append(doc.problem(ref.path, f"meta-schema {ref.ref!r} is neither a "
                                                  "standard one nor a file in schemas/"))
        elif not ref.resource.startswith(BASE_URI):
            named = "" if ref.target == ref.ref else f" (that is {ref.target!r})"
            problems.append(doc.problem(ref.path, f"remote $ref {ref.ref!r}{named} is not "
                                                  "allowed: refer to files inside schemas/ "
                                                  "or to a resource they identify by $id"))
        elif placed.escapes(ref.ref):
            problems.append(doc.problem(ref.path, f"$ref {ref.ref!r} escapes schemas/"))
        else:
            problems.append(doc.problem(ref.path, f"$ref {ref.ref!r}: no such file in "
                                                  "schemas/"))
    return len(problems) == before


def _check_meta(doc: Document, problems: list[Problem]) -> bool:
    if not isinstance(doc.data, dict | bool):
        problems.append(doc.problem((), "a schema must be a JSON object"))
        return False
    cls = jsonschema.validators.validator_for(doc.data, default=jsonschema.Draft202012Validator)
    before = len(problems)
    for error in cls(cls.META_SCHEMA).iter_errors(doc.data):
        where = "/".join(str(p) for p in error.absolute_path)
        problems.append(doc.problem(tuple(error.absolute_path),
                                    f"not a valid JSON Schema at /{where}: {error.message}"))
    return len(problems) == before


def _asserts_formats(doc: Document, problems: list[Problem]) -> bool:
    """Whether ``format`` is asserted: yes, unless the root says it is an annotation."""
    mode = doc.data.get(FORMAT_KEYWORD, "assertion") if isinstance(doc.data, dict) \
        else "assertion"
    if mode not in ("assertion", "annotation"):
        problems.append(doc.problem((FORMAT_KEYWORD,), f"{FORMAT_KEYWORD} must be "
                                                       f"\"assertion\" or \"annotation\", "
                                                       f"got {mode!r:.40}"))
    return mode != "annotation"


def _compile(doc: Document, uri: str, registry: Any, problems: list[Problem]) -> Any:
    asserted = _asserts_formats(doc, problems)
    try:
        return jsonschema_rs.validator_for(
            doc.data,
            registry=registry,
            retriever=_refuse_retrieval,
            base_uri=uri,
            validate_formats=asserted,
            ignore_unknown_formats=not asserted,
            pattern_options=jsonschema_rs.RegexOptions(),
        )
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        message = str(exc).split("\n", 1)[0]
        path = tuple(getattr(exc, "instance_path", ()) or ())
        problems.append(doc.problem(path, f"schema does not compile: {message}"))
        return None


def _read(directory: Path, uri: str, display: str, problems: list[Problem]
          ) -> dict[str, tuple[Path, Document]]:
    """Every ``*.json`` file below ``directory`` by its URI (``uri`` + its path there)."""
    found: dict[str, tuple[Path, Document]] = {}
    for file in sorted(directory.rglob("*.json")):
        rel = file.relative_to(directory).as_posix()
        loaded = load_json(file, f"{display}/{rel}")
        if isinstance(loaded, Problem):
            problems.append(loaded)
        else:
            found[uri + rel] = (file, loaded)
    return found


def _strays(schemas_dir: Path, display: str) -> list[Problem]:
    problems = []
    for file in sorted(schemas_dir.rglob("*")):
        evolution = file.name == EVOLUTION_FILE and len(file.relative_to(schemas_dir).parts) <= 2
        if file.is_file() and file.suffix != ".json" and not file.name.startswith(".") \
                and not evolution:
            rel = file.relative_to(schemas_dir).as_posix()
            problems.append(Problem(f"{display}/{rel}", "not a schema: only *.json files "
                                                        f"and {EVOLUTION_FILE} belong in "
                                                        "schemas/"))
    return problems


def _checked(read: Mapping[str, tuple[Path, Document]], roots: Mapping[str, Path],
             problems: list[Problem]) -> dict[str, tuple[Path, Document]]:
    """The documents that pass their meta-schema and whose references all resolve locally."""
    walks = {uri: walk(doc.data, uri) for uri, (_, doc) in read.items()}
    known = {uri for found in walks.values() for uri in found.identified}
    docs = {}
    for uri, (file, doc) in read.items():
        root = next(path for prefix, path in roots.items() if uri.startswith(prefix))
        if _check_meta(doc, problems) and _check_refs(doc, walks[uri], _Placed(file, root), known,
                                                      problems):
            docs[uri] = (file, doc)
    return docs


def _versions(documents: Mapping[str, Document], registry: Any,
              problems: list[Problem]) -> dict[str, tuple[SchemaVersion, ...]]:
    """Every ``<Type>/v<N>.json`` compiled, by type, versions ascending (shared files checked)."""
    types: dict[str, list[SchemaVersion]] = {}
    for rel, doc in documents.items():
        parts = rel.split("/")
        match = _VERSION_FILE.match(parts[-1])
        if len(parts) != 2 or match is None:
            _compile(doc, BASE_URI + rel, registry, problems)  # shared resource: check only
            continue
        validator = _compile(doc, BASE_URI + rel, registry, problems)
        marks, found = find_marks(rel, documents)
        problems.extend(found)
        if validator is not None:
            types.setdefault(parts[0], []).append(
                SchemaVersion(parts[0], int(match.group(1)), doc.file, validator, marks))
    return {name: tuple(sorted(vs, key=lambda v: v.version)) for name, vs in types.items()}


def load_registry(
    schemas_dir: Path, display: str = "schemas", *, mirrors: Mapping[str, Path] | None = None,
) -> tuple[SchemaRegistry, list[Problem]]:
    """Load, check and compile every schema under ``schemas_dir``; never raises on bad files.

    ``mirrors`` serves more resources from local directories under the URI
    prefix each is mapped to, as if retrieved from there (a ``$ref`` to
    ``prefix + "a/b.json"`` names ``directory/a/b.json``); their problems are
    reported, but they are no message types.
    """
    problems: list[Problem] = []
    if not schemas_dir.is_dir():
        return SchemaRegistry(), [Problem(display, "schemas directory is missing")]
    roots = {BASE_URI: schemas_dir, **(mirrors or {})}
    read = {uri: found for prefix, directory in roots.items()
            for uri, found in _read(directory, prefix, display if prefix == BASE_URI
                                    else prefix.rstrip("/"), problems).items()}
    checked = _checked(read, roots, problems)
    problems.extend(_strays(schemas_dir, display))
    docs = {uri[len(BASE_URI):]: found for uri, found in checked.items()
            if uri.startswith(BASE_URI)}
    try:
        registry = jsonschema_rs.Registry(
            [*META_SCHEMAS.items(), *((uri, doc.data) for uri, (_, doc) in checked.items())],
            retriever=_refuse_retrieval,
        )
    except (ValueError, jsonschema_rs.ReferencingError) as exc:
        # e.g. a "$id" that moves a document's base so a relative $ref leaves schemas/
        problems.append(Problem(display, f"schemas do not resolve: {str(exc).splitlines()[0]}"))
        return SchemaRegistry(), problems
    documents = {rel: doc for rel, (_, doc) in docs.items()}
    frozen = _versions(documents, registry, problems)
    lineages, found = load_evolution(
        schemas_dir, display, documents,
        {name: tuple(v.version for v in vs) for name, vs in frozen.items()})
    problems.extend(found)
    return SchemaRegistry(frozen, {rel: doc.data for rel, (_, doc) in docs.items()},
                          lineages), problems
