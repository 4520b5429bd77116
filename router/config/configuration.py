"""A configuration directory, loaded and checked as a whole into frozen values.

``load_config`` either returns a ``Config`` that is safe to run or raises
``ConfigError`` with every problem found (file and line), so a bad file stops
a deploy, never a message.  ``check_config`` is the same without raising.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from router.config.alternatives import check_branches
from router.config.breaker_rules import check_breakers
from router.config.encryption import check_encryption, check_sensitive_routes
from router.config.keys import KEYS_DIR, load_keys
from router.config.policies import load_policies
from router.config.route_table import check_versions, compile_routes
from router.config.schema_loading import load_registry
from router.config.snapshot import Config
from router.config.source import load_yaml
from router.config.topology import Topology, is_glob
from router.config.topology_parsing import parse_topology
from router.config.whentypes import check_when_types
from router.errors import ConfigError, Problem

# Config is re-exported: tools load a configuration and hold it under this name.  Code on
# the delivery path imports it from router.config.snapshot (no loader, no schema checker).
__all__ = ["Config", "check_config", "load_config"]


def _display(directory: Path, name: str) -> str:
    return str(directory / name) if str(directory) not in ("", ".") else name


def _load(directory: Path) -> tuple[Config, list[Problem]]:
    problems: list[Problem] = []
    topo_file = _display(directory, "topology.yaml")
    doc = load_yaml(directory / "topology.yaml", topo_file)
    if isinstance(doc, Problem):
        problems.append(doc)
        topology, topology_problems = Topology(), [doc]
    else:
        topology, topology_problems = parse_topology(doc)
        problems.extend(topology_problems)
    router, found = compile_routes(topology.routes, topo_file, topology)
    problems.extend(found)
    problems.extend(check_branches(topology, topo_file))
    schemas_display = _display(directory, "schemas")
    registry, schema_problems = load_registry(directory / "schemas", schemas_display)
    problems.extend(schema_problems)
    policies, found = load_policies(directory / "policies", _display(directory, "policies"))
    problems.extend(found)
    # What follows crosses files: a file that did not load would only echo its own
    # problem from others (a breaker "matching no route" of a topology that failed to
    # parse, a route "without a schema" whose schema file is broken). Report the cause.
    broken = _broken_types(schema_problems, schemas_display)
    routes = tuple(r for r in topology.routes if not _affected(r.message_type, broken))
    for route in routes:
        if not is_glob(route.message_type) and route.message_type not in registry:
            problems.append(Problem(topo_file, f"route {route.name!r}: no schema for message "
                                               f"type {route.message_type!r} in schemas/",
                                    route.line))
    if not topology_problems:
        problems.extend(check_breakers(topology, policies.circuit_breakers,
                                       lambda file: _display(directory, file)))
    problems.extend(check_versions(routes, registry, topo_file))
    compiled = {c.spec.name for c in router.routes}
    problems.extend(check_when_types(tuple(r for r in routes if r.name in compiled), registry,
                                     topo_file))
    keys, found = load_keys(directory / KEYS_DIR, _display(directory, KEYS_DIR))
    problems.extend(found)
    problems.extend(check_encryption(policies.encryption, keys, registry.sensitive,
                                     _display(directory, "policies")))
    problems.extend(check_sensitive_routes(routes, registry, topo_file))
    config = Config(directory, topology, router, registry, policies, keys)
    return config, problems


def _broken_types(problems: list[Problem], display: str) -> set[str]:
    """Message types with a schema file that did not load ("*": maybe any of them)."""
    broken: set[str] = set()
    for problem in problems:
        parts = problem.file.removeprefix(display).strip("/").split("/")
        broken.add(parts[0] if len(parts) == 2 and not parts[0].startswith("_") else "*")
    return broken


def _affected(message_type: str, broken: set[str]) -> bool:
    return "*" in broken or any(fnmatch.fnmatchcase(b, message_type) for b in broken)


def check_config(directory: Path) -> list[Problem]:
    """Every problem in the configuration directory (empty when it is fine)."""
    if not directory.is_dir():
        return [Problem(str(directory), "configuration directory does not exist")]
    if not (directory / "topology.yaml").exists() and not (directory / "schemas").exists():
        return [Problem(str(directory), "no configuration here (no topology.yaml, no "
                                        "schemas/): mcp-router init DIR writes one to start "
                                        "from, or give --config DIR")]
    return _load(directory)[1]


def load_config(directory: Path) -> Config:
    """The configuration, or ``ConfigError`` listing every problem."""
    problems = check_config(directory) if not (directory / "topology.yaml").exists() else []
    if problems:
        raise ConfigError(problems)
    config, problems = _load(directory)
    if problems:
        raise ConfigError(problems)
    return config
