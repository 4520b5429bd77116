"""Reading configuration files while remembering where every value came from.

A ``Document`` is the parsed data plus a map from a path inside it (a tuple of
keys and list indexes) to the 1-based line it was written on, so that
``check`` can say ``topology.yaml:14: ...`` for a value found wrong long after
parsing.  JSON files are read with ``json`` (exact numbers, strict syntax) and
their lines are recovered through YAML's composer, since JSON is YAML's flow
style; where that fails the lines are simply unknown.

No file can exhaust the machine: files over ``MAX_FILE_BYTES`` are refused
unread, and a YAML document whose aliases would expand to more than
``MAX_ALIAS_EXPANSION`` values beyond those written (a "billion laughs"), or
that refers to itself, is refused after composing and before anything walks
it: PyYAML shares an aliased node, but every walk of the loaded data (the
line marks here, the parsers, a dump) follows every path through it.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from router.errors import Problem

__all__ = ["MAX_ALIAS_EXPANSION", "MAX_FILE_BYTES", "Document", "Path_", "load_json",
           "load_yaml"]

Path_ = tuple[str | int, ...]
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_ALIAS_EXPANSION = 100_000  # values aliases may add to a document, beyond those written


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


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _expansion(root: yaml.Node) -> tuple[dict[int, int], yaml.Node | None]:
    """Each node's size with every alias expanded (by ``id``), and a node that contains
    itself, if any.  Linear in the nodes written: each is sized once, without recursion."""
    sizes: dict[int, int] = {}
    expanding: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            expanding.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in _children(node))
        elif id(node) in expanding:
            return sizes, node
        elif id(node) not in sizes:
            expanding.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
    return sizes, None


def _bomb(root: yaml.Node, display: str) -> Problem | None:
    """A problem when aliases make ``root`` recursive or far larger than it is written."""
    sizes, recursive = _expansion(root)
    if recursive is not None:
        return Problem(display, "a YAML alias refers to a node that contains it "
                                "(recursive data is refused)", recursive.start_mark.line + 1)
    added = sizes[id(root)] - len(sizes)
    if added <= MAX_ALIAS_EXPANSION:
        return None
    limit = MAX_ALIAS_EXPANSION
    nodes: dict[int, yaml.Node] = {}
    stack = [root]
    while stack:  # every distinct node once, to find where the expansion starts
        node = stack.pop()
        if id(node) not in nodes:
            nodes[id(node)] = node
            stack.extend(_children(node))
    seeds = [n for n in nodes.values() if sizes[id(n)] > limit
             and all(sizes[id(c)] <= limit for c in _children(n))]
    seed = min(seeds, key=lambda n: n.start_mark.line, default=root)
    return Problem(display, f"YAML aliases expand this document by {added:,} values (more "
                            f"than {limit:,}: an alias bomb?); write the values out or use "
                            "fewer aliases", seed.start_mark.line + 1)


def _read(path: Path, display: str) -> str | Problem:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return Problem(display, f"{size:,} bytes is larger than the {MAX_FILE_BYTES:,} a "
                                    "configuration file may be")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Problem(display, f"cannot read: {exc}")


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
    """Parse one YAML file; a syntax error or an alias bomb becomes a located ``Problem``."""
    text = _read(path, display)
    if isinstance(text, Problem):
        return text
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        bomb = _bomb(node, display) if node is not None else None
        if bomb is not None:
            return bomb
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:
        return Problem(display, "YAML error: nested too deeply")
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
    text = _read(path, display)
    if isinstance(text, Problem):
        return text
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        return Problem(display, f"not valid JSON: {exc.msg}", exc.lineno)
    except (ValueError, RecursionError) as exc:
        return Problem(display, f"not valid JSON: {exc}")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        lines = dict(_marks(node, ())) if node is not None else {}
    except (yaml.YAMLError, RecursionError):
        lines = {}
    return Document(display, data, lines)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
