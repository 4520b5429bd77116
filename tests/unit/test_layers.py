"""The import rules of the package: layers in order, no cycles, a pure core.

Every module's imports are read with ``ast`` (nothing is imported): module-level
imports, imports inside functions, and imports under ``if TYPE_CHECKING:``
(a type is a dependency too).  The layers, lowest first; a module may import
its own layer and the layers below, never one above::

    router.errors
    router.evolution      check-time schema compatibility
    router.config         files read once, frozen values, every parser
    router.core           pure decisions over those values
    router.broker | router.observe | router.discovery
    router.runtime        the service lifetime
    router.tools | router.web | router.testing

``router.sdk`` (services) may import errors, evolution, config (never the
router's loader, ``router.config.configuration``), core, broker, observe and
discovery.  ``router`` itself (``router/__init__.py``) is the public face: it
resolves its names lazily and sits outside the order.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

import pytest

from tests.unit.importgraph import IMPORTS, MODULES, ROOT, When, chain, edges, loaded_by

# Lowest first; the modules of one tuple are one layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("router.errors",),
    ("router.evolution",),
    ("router.config",),
    ("router.core",),
    ("router.broker", "router.observe", "router.discovery"),
    ("router.runtime",),
    ("router.tools", "router.web", "router.testing"),
)
SDK_MAY_IMPORT = ("router.errors", "router.evolution", "router.config", "router.core",
                  "router.broker", "router.observe", "router.discovery", "router.sdk")
LOADER = "router.config.configuration"
COMPAT = "router.evolution.compat"

# Upward imports that exist today, each with why; the list is meant to shrink to nothing.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("router.runtime.http", "router.web.app"):
        "the router's HTTP endpoints serve the console app; the console belongs below "
        "runtime or http above web",
    ("router.runtime.http", "router.web.providers"):
        "as above: the console's data sources",
}

# What router/core may not import (also banned by router/core/ruff.toml): the broker
# clients, the clock, randomness, concurrency, the file system, the environment, processes.
CORE_BANNED_MODULES = frozenset({
    "aio_pika", "aiormq", "pamqp", "asyncio", "time", "random", "secrets", "uuid", "os",
    "socket", "subprocess", "threading",
})
CORE_BANNED_NAMES = frozenset({"pathlib.Path"})  # PurePath is fine: no file is touched
CORE_BANNED_CALLS = frozenset({"now", "utcnow", "today"})  # datetime.now(), date.today()


def _layer(module: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(top + ".") for top in layer):
            return index
    return None


def test_the_layer_list_names_every_package() -> None:
    """Every subpackage of router sits in a layer (or is the SDK)."""
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py" and m.count(".") == 1}
    placed = {top for layer in LAYERS for top in layer} | {"router.sdk"}
    assert packages - placed == set()


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or round a loop (TYPE_CHECKING included)."""
    graph = {m: sorted({t for t, _ in edges(m, at_load_only=True)}) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert cycles == []


def test_layers_import_only_downwards() -> None:
    """No module imports a layer above its own (the listed exceptions aside)."""
    upward = []
    for module, path in MODULES.items():
        own = _layer(module)
        for target, line in edges(module):
            theirs = _layer(target)
            if own is None or theirs is None or theirs <= own:
                continue
            if (module, target) not in EXCEPTIONS:
                upward.append(f"{path.relative_to(ROOT.parent)}:{line}: {target}")
    assert upward == []


def test_every_listed_exception_still_exists() -> None:
    """An exception that the code no longer needs is taken off the list."""
    present = {(m, t) for m in MODULES for t, _ in edges(m)}
    assert set(EXCEPTIONS) - present == set()


def test_the_sdk_imports_only_what_it_may() -> None:
    """router.sdk depends on core, broker, observe, discovery, config parts and errors."""
    wrong = [f"{m}:{line}: {t}" for m in MODULES if m.startswith("router.sdk")
             for t, line in edges(m)
             if t == LOADER or not t.startswith(SDK_MAY_IMPORT)]
    assert wrong == []


def test_the_sdk_never_loads_the_routers_configuration_loader() -> None:
    """Nothing a service imports from router.sdk reaches router.config.configuration."""
    found = loaded_by("router.sdk")
    assert LOADER not in found, chain(found, LOADER)


@pytest.mark.parametrize("module", ["router.core.pipeline", "router.core.sealing"])
def test_the_decision_path_never_loads_the_compatibility_checker(module: str) -> None:
    """``decide`` reaches neither the schema-compatibility checker nor the loader."""
    found = loaded_by(module)
    assert COMPAT not in found, chain(found, COMPAT)
    assert LOADER not in found, chain(found, LOADER)


def _core_violations(module: str) -> Iterator[str]:
    where = MODULES[module].relative_to(ROOT.parent)
    for found in IMPORTS[module]:
        top = found.target.split(".")[0]
        if top in CORE_BANNED_MODULES or found.target in CORE_BANNED_NAMES:
            yield f"{where}:{found.line}: imports {found.target}"
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in CORE_BANNED_CALLS):
            yield f"{where}:{node.lineno}: calls .{node.func.attr}() (a clock)"


def test_the_core_is_pure() -> None:
    """router/core imports no broker client, clock, randomness, I/O or concurrency."""
    violations = [v for m in MODULES if m.startswith("router.core") for v in _core_violations(m)]
    assert violations == []


def test_the_reader_sees_function_and_type_checking_imports() -> None:
    """The import reader counts imports inside functions and under TYPE_CHECKING."""
    whens = {i.when for i in IMPORTS["router.config"] if i.target == LOADER}
    assert whens == {When.IN_FUNCTION, When.TYPE_CHECKING}
