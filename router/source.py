"""Reading configuration files while remembering where every value came from.

A ``Document`` is the parsed data plus a map from a path inside it (a tuple of
keys and list indexes) to the 1-based line it was written on, so that
``check`` can say ``topology.yaml:14: ...`` for a value found wrong long after
parsing.  JSON files are read with ``json`` (exact numbers, strict syntax) and
their lines are recovered through YAML's composer, since JSON is YAML's flow
style; where that fails the lines are simply unknown.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from router.errors import Problem

__all__ = ["Document", "Path_", "load_json", "load_yaml"]

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """Parsed data of one file and the line of each value in it."""

    file: str
    data: Any
    lines: Mapping[Path_, int] = field(default_factory=dict)

    def line(self, path: Path_) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def problem(self, path: Path_, message: str) -> Problem:
        """A ``Problem`` located at ``path`` in this file."""
        return Problem(self.file, message, self.line(path))


def _marks(node: yaml.Node, path: Path_,
           seen: frozenset[int] = frozenset()) -> Iterator[tuple[Path_, int]]:
    """Lines by path; an alias already on the way down is not entered again."""
    yield path, node.start_mark.line + 1
    if id(node) in seen:
        return
    seen = seen | {id(node)}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                yield from _marks(value, (*path, key.value), seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _marks(item, (*path, index), seen)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys instead of keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    None, None, f"a mapping key must be a plain value, got {type(key).__name__}",
                    key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path, display: str) -> Document | Problem:
    """Parse one YAML file; a syntax error becomes a located ``Problem``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Problem(display, f"cannot read: {exc}")
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        return Problem(display, f"YAML error: {exc.problem or exc}", line)
    except yaml.YAMLError as exc:
        return Problem(display, f"YAML error: {exc}")
    finally:
        loader.dispose()
    lines = dict(_marks(node, ())) if node is not None else {}
    return Document(display, data, lines)


def load_json(path: Path, display: str) -> Document | Problem:
    """Parse one JSON file strictly; lines are recovered on a best-effort basis."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Problem(display, f"cannot read: {exc}")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        return Problem(display, f"not valid JSON: {exc.msg}", exc.lineno)
    except (ValueError, RecursionError) as exc:
        return Problem(display, f"not valid JSON: {exc}")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        lines = dict(_marks(node, ())) if node is not None else {}
    except yaml.YAMLError:
        lines = {}
    return Document(display, data, lines)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
