"""The admission sections of ``policies/*.yaml``, parsed into frozen rules.

``router.core.admission`` decides over these rules; this module only reads them.

Policy file sections (``policies/*.yaml``), first matching rule wins, files in
name order:

``authorization``::

    authorization:
      default: deny               # allow | deny, for types no rule matches
      rules:
        - match: "Order*"         # glob on the message type
          publishers: [shop, checkout]   # broker users (validated user_id); "*": any known

  A message without ``user_id`` comes from an unknown publisher: it passes only
  a rule (or default) that allows anyone, never a named list or ``"*"``.

``limits``::

    limits:
      - match: "*"
        max_body_bytes: 65536
        required_properties: [message_id, type]     # AMQP property names
        content_types: [application/json]          # absent content type counts as JSON
        message_ttl: 1h           # copies expire after this (sets/caps ``expiration``)

``priority``::

    priority:
      - match: "Payment*"
        priority: 9               # AMQP priority of routed copies (0-255)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from router.config.durations import parse_duration
from router.config.fields import Fields, Shape
from router.config.source import Document
from router.errors import Problem

__all__ = [
    "ANYONE",
    "PROPERTIES",
    "AuthRule",
    "Authorization",
    "LimitRule",
    "PriorityRule",
    "parse_authorization",
    "parse_limits",
    "parse_priority",
]


PROPERTIES = ("content_type", "content_encoding", "delivery_mode", "priority",
              "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
              "user_id", "app_id")


ANYONE = "*"


@dataclass(frozen=True, slots=True)
class AuthRule:
    match: str
    publishers: tuple[str, ...]
    where: str  # "policies/auth.yaml:4", for the dead letter's error

    def allows(self, publisher: str | None) -> bool:
        if "**" in self.publishers:
            return True  # anyone, identified or not
        return publisher is not None and (ANYONE in self.publishers
                                          or publisher in self.publishers)


@dataclass(frozen=True)
class Authorization:
    default: str = "allow"
    rules: tuple[AuthRule, ...] = ()
    where: str = "the default"


@dataclass(frozen=True, slots=True)
class LimitRule:
    match: str
    max_body_bytes: int | None = None
    required_properties: tuple[str, ...] = ()
    content_types: tuple[str, ...] = ()
    message_ttl: float | None = None


@dataclass(frozen=True, slots=True)
class PriorityRule:
    match: str
    priority: int


def parse_authorization(doc: Document, raw: Any, problems: list[Problem]) -> Authorization:
    f = Fields.of(doc, ("authorization",), raw, problems,
                  shape=Shape({"default", "rules"}, "authorization"))
    if not f.valid:
        return Authorization()
    default = f.choice("default", ("allow", "deny"), "allow")
    rules: list[AuthRule] = []
    for i, item in enumerate(f.get("rules", list, [])):
        r = Fields.of(doc, ("authorization", "rules", i), item, problems,
                      shape=Shape({"match", "publishers"}, "authorization rule"))
        if not r.valid:
            continue
        publishers = r.get("publishers", list, [], required=True)
        if any(not isinstance(x, str) or not x for x in publishers):
            r.fail(("publishers",), "publishers must be broker user names (strings)")
        if r.valid:
            rules.append(AuthRule(r.name("match"), tuple(publishers),
                                  f"{_short(doc.file)}:{r.line()}"))
    return Authorization(default, tuple(rules), f"{_short(doc.file)}:{f.line(('default',))}")


def _short(file: str) -> str:
    """``policies/<file>``: dead letters name the rule without the server's paths."""
    return f"policies/{PurePath(file).name}"


def parse_limits(doc: Document, raw: Any, problems: list[Problem]) -> list[LimitRule]:
    rules: list[LimitRule] = []
    for f in Fields.rules(doc, "limits", raw, problems,
                          shape=Shape({"match", "max_body_bytes", "required_properties",
                                       "content_types", "message_ttl"}, "limits rule")):
        size = f.get("max_body_bytes", int, 0) if "max_body_bytes" in f.data else None
        if size is not None and size < 1:
            f.fail(("max_body_bytes",), "max_body_bytes must be at least 1")
        required = f.get("required_properties", list, [])
        unknown = [x for x in required if x not in PROPERTIES]
        if unknown:
            f.fail(("required_properties",), f"unknown AMQP property {unknown[0]!r} "
                                             f"(known: {', '.join(PROPERTIES)})")
        types = f.get("content_types", list, [])
        if any(not isinstance(t, str) for t in types):
            f.fail(("content_types",), "content_types must be media types (strings)")
        ttl = None
        if "message_ttl" in f.data:
            ttl = parse_duration(f.data["message_ttl"])
            if ttl is None or ttl < 0.001:
                f.fail(("message_ttl",), "message_ttl must be a duration such as 30s or 1h")
        if f.valid:
            rules.append(LimitRule(f.name("match"), size, tuple(required),
                                   tuple(t.lower() for t in types), ttl))
    return rules


def parse_priority(doc: Document, raw: Any, problems: list[Problem]) -> list[PriorityRule]:
    rules: list[PriorityRule] = []
    for f in Fields.rules(doc, "priority", raw, problems,
                          shape=Shape({"match", "priority"}, "priority rule")):
        value = f.get("priority", int, 0, required=True)
        if not 0 <= value <= 255:
            f.fail(("priority",), "priority must be between 0 and 255")
        if f.valid:
            rules.append(PriorityRule(f.name("match"), value))
    return rules
