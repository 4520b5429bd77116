"""How each message type may evolve: ``schemas/<Type>/evolution.yaml``, checked at load.

::

    compatibility: backward          # none | backward | backward_transitive | forward
                                     # | forward_transitive | full | full_transitive
    upcasters:
      - from: 1                      # the step from v1 to the next version
        steps:
          - rename: {from: amount, to: total_amount}
          - default: {field: currency, value: EUR}
          - drop: legacy_flag
          - move: {from: customer.id, to: customer_id}
          - function: shop.upcasts:order_v1_to_v2

``schemas/evolution.yaml`` may set the default ``compatibility`` of every type
(``none`` when absent).  The modes are Confluent Schema Registry's: *backward*,
consumers of the new version read messages of the previous one; *forward*, the
previous version's consumers read the new one's; *full*, both; ``_transitive``
against every earlier version, not only the previous.  For backward checks an
upcaster counts: old messages are read as the upcaster hands them on (a step
with a ``function`` is trusted, not checked).  Every break is a ``Problem`` at
the new version's file and line, naming the field and why
(``router.config.schema_evolution``, which runs ``router.evolution.compat``).

This module holds the frozen ``Lineage`` and reads the files; it never imports
the compatibility checker, so the router's hot path does not either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from router.config.fields import Fields, Shape
from router.config.source import Document, load_yaml
from router.config.upcasters import Default, Drop, Function, Move, Step, Upcaster, import_function
from router.errors import Problem

__all__ = ["EVOLUTION_FILE", "MODES", "Lineage", "default_mode", "parse_lineage"]

EVOLUTION_FILE = "evolution.yaml"
MODES = ("none", "backward", "backward_transitive", "forward", "forward_transitive", "full",
         "full_transitive")
_STEPS = ("rename", "default", "drop", "move", "function")


@dataclass(frozen=True, slots=True)
class Lineage:
    """A message type's versions, its compatibility mode and its upcasters by source version."""

    message_type: str
    versions: tuple[int, ...] = ()
    compatibility: str = "none"
    upcasters: Mapping[int, Upcaster] = field(default_factory=dict)

    @property
    def backward(self) -> bool:
        """True when ``check`` proves each version's messages readable as the next one."""
        return self.compatibility.startswith(("backward", "full"))

    def chain(self, source: int, target: int) -> tuple[Upcaster, ...]:
        """The upcasters from ``source`` up to ``target``; a step without one is unchanged."""
        return tuple(self.upcasters[v] for v in self.versions
                     if source <= v < target and v in self.upcasters)

    def stranded(self, target: int) -> tuple[int, ...]:
        """Older versions whose messages have no declared way to ``target``.

        A step without an upcaster passes messages on unchanged, which is safe
        only where the backward check has proven it.
        """
        if self.backward:
            return ()
        return tuple(v for v in self.versions if v < target and v not in self.upcasters)


def _path(f: Fields, sub: tuple[str | int, ...], value: Any) -> tuple[str, ...] | None:
    parts = tuple(value.split(".")) if isinstance(value, str) else ()
    if not parts or not all(parts):
        f.fail(sub, f"a field path must be a dotted name like customer.id, got {value!r}")
        return None
    return parts


def _step(f: Fields, index: int, raw: Any) -> Step | None:
    """One step: a mapping with exactly one of the step kinds."""
    sub: tuple[str | int, ...] = ("steps", index)
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in _STEPS:
        f.fail(sub, f"a step is one of {', '.join(_STEPS)} (a mapping with one key)")
        return None
    kind, value = next(iter(raw.items()))
    at = (*sub, kind)
    if kind in {"drop", "function"}:
        if kind == "drop":
            path = _path(f, at, value)
            return Drop(path) if path else None
        found = import_function(value) if isinstance(value, str) \
            else f"function must be 'module:function', got {value!r}"
        if isinstance(found, str):
            f.fail(at, found)
            return None
        return Function(value, found)
    keys = {"default": {"field", "value"}}.get(kind, {"from", "to"})
    if not isinstance(value, dict) or set(value) != keys:
        f.fail(at, f"{kind} takes {{{', '.join(sorted(keys))}}}")
        return None
    if kind == "default":
        path = _path(f, at, value["field"])
        return Default(path, value["value"]) if path else None
    source, target = _path(f, at, value["from"]), _path(f, at, value["to"])
    if source is None or target is None:
        return None
    if kind == "rename":
        if len(target) != 1:
            f.fail(at, "rename keeps the field in its object: 'to' is a name, not a path "
                       "(use move)")
            return None
        target = (*source[:-1], target[0])
    return Move(source, target)


def _upcaster(doc: Document, index: int, raw: Any, versions: tuple[int, ...],
              problems: list[Problem]) -> Upcaster | None:
    f = Fields.of(doc, ("upcasters", index), raw, problems,
                  shape=Shape({"from", "steps"}, "upcaster"))
    if not f.valid:
        return None
    before = len(problems)
    source = f.get("from", int, 0, required=True)
    later = [v for v in versions if v > source]
    if len(problems) == before and (source not in versions or not later):
        known = ", ".join(map(str, versions))
        f.fail(("from",), f"no step from v{source}: it must be a version that has a newer one "
                          f"(versions: {known})")
    steps = [_step(f, i, raw_step) for i, raw_step in
             enumerate(f.get("steps", list, [], required=True))]
    if len(problems) > before:
        return None
    return Upcaster(source, later[0], tuple(s for s in steps if s is not None), f.line())


def parse_lineage(doc: Document, message_type: str, versions: tuple[int, ...], default: str,
             problems: list[Problem]) -> Lineage:
    """The lineage one ``<Type>/evolution.yaml`` declares; its problems are recorded."""
    f = Fields.of(doc, (), doc.data if doc.data is not None else {}, problems,
                  shape=Shape({"compatibility", "upcasters"}, EVOLUTION_FILE))
    mode = f.choice("compatibility", MODES, default) if f.valid else default
    upcasters: dict[int, Upcaster] = {}
    for i, raw in enumerate(f.get("upcasters", list, []) if f.valid else []):
        upcaster = _upcaster(doc, i, raw, versions, problems)
        if upcaster is None:
            continue
        if upcaster.source in upcasters:
            problems.append(doc.problem(("upcasters", i, "from"),
                                        f"a second upcaster from v{upcaster.source}"))
        upcasters[upcaster.source] = upcaster
    return Lineage(message_type, versions, mode, upcasters)


def default_mode(schemas_dir: Path, display: str, problems: list[Problem]) -> str:
    """The ``compatibility`` of ``schemas/evolution.yaml`` (``none`` when absent)."""
    path = schemas_dir / EVOLUTION_FILE
    if not path.is_file():
        return "none"
    doc = load_yaml(path, f"{display}/{EVOLUTION_FILE}")
    if isinstance(doc, Problem):
        problems.append(doc)
        return "none"
    f = Fields.of(doc, (), doc.data if doc.data is not None else {}, problems,
                  shape=Shape({"compatibility"}, f"schemas/{EVOLUTION_FILE}"))
    return f.choice("compatibility", MODES, "none") if f.valid else "none"
