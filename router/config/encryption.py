"""The ``encryption`` policy: which data key seals sensitive fields, and who may read them plain.

Policy section (``policies/*.yaml``, at most one)::

    encryption:
      key: pii                   # keys/pii/v<N>.json: the newest version encrypts;
                                 # "pii.v2" pins a version (roll a new one out first)
      plain:                     # copies that keep sensitive fields in plain text
        - route: payment-capture # glob on the route name
        - exchange: billing      # glob on a destination exchange ...
          routing_key: "invoice.*"   # ... and optionally on its routing key

Every other copy, every dead letter, log line and span carries only
ciphertext or a mask (``router.core.sealing``).  ``check_encryption`` holds the
rules ``check`` applies: sensitive schemas need a key; the key (or pinned key
id) must be provided by a key file.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from router.config.fields import Fields, Shape
from router.config.keyring import KID
from router.config.keys import KeySet
from router.config.schemas import SchemaRegistry
from router.config.sensitive_marks import EACH, Rest, Step, pointer
from router.config.source import Document
from router.config.topology import RouteSpec
from router.errors import Problem

__all__ = [
    "Encryption", "Entitlement", "check_encryption", "check_sensitive_routes", "parse_encryption",
    "read_paths",
]


@dataclass(frozen=True, slots=True)
class Entitlement:
    """A ``plain`` rule: a route glob, or a destination exchange (and routing key) glob."""

    route: str | None = None
    exchange: str | None = None
    routing_key: str | None = None

    def allows(self, route: str, exchange: str, routing_key: str) -> bool:
        if self.route is not None:
            return fnmatch.fnmatchcase(route, self.route)
        return self.exchange is not None and fnmatch.fnmatchcase(exchange, self.exchange) \
            and (self.routing_key is None or fnmatch.fnmatchcase(routing_key, self.routing_key))


@dataclass(frozen=True, slots=True)
class Encryption:
    key: str | None = None  # a key name, or a pinned key id "name.vN"
    plain: tuple[Entitlement, ...] = ()
    where: str = ""  # file:line of the section

    def entitled(self, route: str, exchange: str, routing_key: str) -> bool:
        """Whether a copy for this route and destination gets sensitive fields in plain."""
        return any(rule.allows(route, exchange, routing_key) for rule in self.plain)


def parse_encryption(doc: Document, raw: Any, problems: list[Problem]) -> Encryption:
    """The ``encryption`` section of one policy file."""
    f = Fields.of(doc, ("encryption",), raw, problems, shape=Shape({"key", "plain"}, "encryption"))
    if not f.valid:
        return Encryption()
    key = f.name("key")
    plain: list[Entitlement] = []
    for i, item in enumerate(f.get("plain", list, [])):
        rule = Fields.of(doc, ("encryption", "plain", i), item, problems,
                         shape=Shape({"route", "exchange", "routing_key"}, "plain rule"))
        if not rule.valid:
            continue
        route = rule.get("route", str, "") or None
        exchange = rule.get("exchange", str, "") or None
        routing_key = rule.get("routing_key", str, "") or None
        if (route is None) == (exchange is None):
            rule.fail((), "a plain rule names either a route or an exchange")
        elif route is not None and routing_key is not None:
            rule.fail(("routing_key",), "routing_key goes with exchange, not with route")
        if rule.valid:
            plain.append(Entitlement(route, exchange, routing_key))
    return Encryption(key, tuple(plain), f"policies/{PurePath(doc.file).name}:{f.line()}")


def check_encryption(encryption: Encryption, keys: KeySet, sensitive: bool,
                     policies: str) -> list[Problem]:
    """Sensitive schemas need a key, and the key must be provided by a key file."""
    file, _, line = encryption.where.rpartition(":")
    where = (policies + file.removeprefix("policies"), int(line) if line.isdigit() else None)
    if encryption.key is None:
        if sensitive:
            return [Problem(policies, "schemas mark sensitive fields (x-mcp-sensitive) but no "
                                      "policy names an encryption key: add 'encryption: "
                                      "{key: NAME}' and create it with 'mcp-router keys "
                                      "rotate NAME'")]
        return []
    key = encryption.key
    if KID.match(key) is not None:
        if key not in keys.kids():
            name, _, version = key.rpartition(".")
            return [Problem(where[0], f"encryption key id {key!r}: no key file provides it "
                                      f"(keys/{name}/{version}.json)", where[1])]
        return []
    if keys.newest(key) is None:
        return [Problem(where[0], f"encryption key {key!r}: no key file provides a version "
                                  f"of it (keys/{key}/v1.json; 'mcp-router keys rotate "
                                  f"{key}')", where[1])]
    return []


_USE = re.compile(r"(?<![.\w])message\b")
_ACCESS = re.compile(r"""\s*(?:\.\s*([A-Za-z_]\w*)\b(?!\s*\()|\[\s*"([^"\\]*)"\s*\]"""
                     r"""|\[\s*'([^'\\]*)'\s*\]|\[\s*([0-9]+)\s*\])""")


def read_paths(source: str) -> list[tuple[str, ...]]:
    """Each body path a CEL expression reads (``message.customer.email`` ->
    ``("customer", "email")``; an index is ``"*"``)."""
    paths: list[tuple[str, ...]] = []
    for use in _USE.finditer(source):
        path: list[str] = []
        at = use.end()
        while (access := _ACCESS.match(source, at)) is not None:
            name = next(g for g in access.groups() if g is not None)
            path.append("*" if access.group(4) is not None else name)
            at = access.end()
        paths.append(tuple(path))
    return paths


def _touches(read: tuple[str, ...], mark: tuple[Step, ...]) -> bool:
    """Whether reading ``read`` reads the marked value (or something inside it)."""
    if len(read) < len(mark):
        return False
    return all((isinstance(step, Rest) and part not in step.declared)
               or (step is EACH and part == "*") or step == part
               for part, step in zip(read, mark, strict=False))


def check_sensitive_routes(routes: tuple[RouteSpec, ...], registry: SchemaRegistry,
                           file: str) -> list[Problem]:
    """A route's ``when`` may not read a sensitive field: CEL would see only ciphertext."""
    problems: list[Problem] = []
    for route in routes:
        if route.when is None:
            continue
        marks = {(name, pointer(m)): m for name, versions in registry.types.items()
                 if fnmatch.fnmatchcase(name, route.message_type)
                 for v in versions for m in v.marks}
        for read in read_paths(route.when):
            hit = next(((name, shown) for (name, shown), m in marks.items()
                        if _touches(read, m)), None)
            if hit is not None:
                problems.append(Problem(file, f"route {route.name!r}: 'when' reads "
                                              f"message.{'.'.join(read)}, sensitive in "
                                              f"{hit[0]} ({hit[1]}): routing on it would see "
                                              "only ciphertext", route.line))
                break
    return problems
