"""The package's imports, read with ``ast`` (nothing is imported), for tests/unit/test_layers.py.

Every import is recorded with when it runs: at module level, under
``if TYPE_CHECKING:`` (never at run time, a dependency all the same) or inside a
function (when called).  ``from a.b import c`` names the module ``a.b.c`` when
there is one, else ``a.b``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "router"

class When(Enum):
    """When an import runs."""

    AT_LOAD = "at load"  # at module level
    TYPE_CHECKING = "for type checkers"  # under ``if TYPE_CHECKING:``: never at run time
    IN_FUNCTION = "when called"  # inside a function body


@dataclass(frozen=True, slots=True)
class Import:
    """One imported module (or name), where, and when it runs."""

    target: str  # a module of the package, else the imported dotted name
    line: int
    when: When

    @property
    def at_load(self) -> bool:
        """Written at module level (under TYPE_CHECKING or not): the module depends on it."""
        return self.when is not When.IN_FUNCTION


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


class _Reader(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.when = When.AT_LOAD
        self.found: list[Import] = []

    def _inside(self, node: ast.AST, when: When) -> None:
        outer, self.when = self.when, when if self.when is When.AT_LOAD else self.when
        self.generic_visit(node)
        self.when = outer

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self._inside(node, When.IN_FUNCTION)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        named = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if named != "TYPE_CHECKING":
            self.generic_visit(node)
            return
        self._inside(ast.Module(body=node.body, type_ignores=[]), When.TYPE_CHECKING)
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append(Import(alias.name, node.lineno, self.when))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        source = _resolve(self.module, node)
        for alias in node.names:
            name = f"{source}.{alias.name}"
            self.found.append(Import(name if name in MODULES or not source.startswith("router")
                                     else source, node.lineno, self.when))


def imports_of(module: str) -> list[Import]:
    """Every import written in ``module``."""
    reader = _Reader(module)
    reader.visit(ast.parse(MODULES[module].read_text(encoding="utf-8")))
    return reader.found


IMPORTS: dict[str, list[Import]] = {m: imports_of(m) for m in MODULES}


def internal(target: str) -> str | None:
    """The package module an import names (``router.x.y`` of ``router.x.y.Name``)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def edges(module: str, *, at_load_only: bool = False,
           run_time_only: bool = False) -> Iterator[tuple[str, int]]:
    for found in IMPORTS[module]:
        target = internal(found.target)
        if target is None or target == module:
            continue
        if at_load_only and not found.at_load:
            continue
        if run_time_only and found.when is not When.AT_LOAD:
            continue
        yield target, found.line


def _parents(module: str) -> Iterator[str]:
    parts = module.split(".")
    for end in range(1, len(parts)):
        yield ".".join(parts[:end])


def loaded_by(module: str) -> dict[str, str]:
    """Every package module importing ``module`` may load, with the module that imports it.

    Follows every import of the modules reached (inside functions too: a
    function may run; under TYPE_CHECKING too: a dependency all the same), and
    the package ``__init__`` modules Python runs first, of which only what runs
    at load counts (``router/__init__.py`` resolves its names lazily).
    """
    seen: dict[str, str] = {module: ""}
    todo = [(module, False)]
    while todo:
        current, as_parent = todo.pop()
        for target, _ in edges(current, run_time_only=as_parent):
            if target not in seen:
                seen[target] = current
                todo.append((target, False))
        for parent in _parents(current):
            if parent not in seen:
                seen[parent] = current
                todo.append((parent, True))
    return seen


def chain(found: dict[str, str], last: str) -> str:
    chain = [last]
    while found[chain[-1]]:
        chain.append(found[chain[-1]])
    return " <- ".join(chain)
