"""Stage "policy": who may publish what, input limits, and the priority of copies (pure).

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

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from router.config.fields import Fields
from router.config.source import Document
from router.core.envelope import Envelope
from router.core.outcome import DeadLetter, Reason
from router.errors import Problem

__all__ = [
    "AuthRule",
    "Authorization",
    "LimitRule",
    "PriorityRule",
    "admit",
    "copy_overrides",
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


def _first(rules: tuple[Any, ...], message_type: str) -> Any:
    return next((r for r in rules if fnmatch.fnmatchcase(message_type, r.match)), None)


def admit(envelope: Envelope, message_type: str | None, authorization: Authorization,
          limits: tuple[LimitRule, ...]) -> DeadLetter | None:
    """None when the message may go on; else why not, as a dead letter."""
    type_name = message_type or ""
    p = envelope.properties
    limit: LimitRule | None = _first(limits, type_name)
    if limit is not None:
        if limit.max_body_bytes is not None and len(envelope.body) > limit.max_body_bytes:
            return DeadLetter(Reason.MALFORMED, f"body of {len(envelope.body)} bytes is over the "
                                                f"limit of {limit.max_body_bytes}", message_type)
        missing = [name for name in limit.required_properties if getattr(p, name) in (None, "")]
        if missing:
            return DeadLetter(Reason.MALFORMED, f"required properties missing: "
                                                f"{', '.join(missing)}", message_type)
        media = (p.content_type or "application/json").split(";", 1)[0].strip().lower()
        if limit.content_types and media not in limit.content_types:
            return DeadLetter(Reason.MALFORMED, f"content type {media!r} is not allowed "
                                                f"(allowed: {', '.join(limit.content_types)})",
                              message_type)
    rule: AuthRule | None = _first(authorization.rules, type_name)
    publisher = p.user_id
    if rule is not None:
        if rule.allows(publisher):
            return None
        allowed = ", ".join(rule.publishers)
        return DeadLetter(Reason.UNAUTHORIZED,
                          f"{_who(publisher)} may not publish {type_name or 'untyped messages'}: "
                          f"rule {rule.match!r} at {rule.where} allows {allowed}", message_type)
    if authorization.default == "deny":
        return DeadLetter(Reason.UNAUTHORIZED,
                          f"{_who(publisher)} may not publish {type_name or 'untyped messages'}: "
                          f"no rule matches and the default at {authorization.where} is deny",
                          message_type)
    return None


def _who(publisher: str | None) -> str:
    return f"publisher {publisher!r}" if publisher else "an unknown publisher (no user_id)"


def copy_overrides(message_type: str, limits: tuple[LimitRule, ...],
                   priorities: tuple[PriorityRule, ...], expiration: str | None
                   ) -> dict[str, Any]:
    """Property changes for routed copies: ``priority`` and a capped ``expiration``."""
    changes: dict[str, Any] = {}
    priority: PriorityRule | None = _first(priorities, message_type)
    if priority is not None:
        changes["priority"] = priority.priority
    limit: LimitRule | None = _first(limits, message_type)
    if limit is not None and limit.message_ttl is not None:
        cap = round(limit.message_ttl * 1000)
        current = int(expiration) if expiration and expiration.isdigit() else None
        if current is None or current > cap:
            changes["expiration"] = str(cap)
    return changes


Duration = Callable[[Any], float | None]


def parse_authorization(doc: Document, raw: Any, problems: list[Problem]) -> Authorization:
    f = Fields.of(doc, ("authorization",), raw, problems, allowed={"default", "rules"},
                  what="authorization")
    if not f.valid:
        return Authorization()
    default = f.choice("default", ("allow", "deny"), "allow")
    rules: list[AuthRule] = []
    for i, item in enumerate(f.get("rules", list, [])):
        r = Fields.of(doc, ("authorization", "rules", i), item, problems,
                      allowed={"match", "publishers"}, what="authorization rule")
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


def parse_limits(doc: Document, raw: Any, problems: list[Problem],
                 duration: Duration) -> list[LimitRule]:
    rules: list[LimitRule] = []
    for f in Fields.rules(doc, "limits", raw, problems,
                          allowed={"match", "max_body_bytes", "required_properties",
                                   "content_types", "message_ttl"}, what="limits rule"):
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
            ttl = duration(f.data["message_ttl"])
            if ttl is None or ttl < 0.001:
                f.fail(("message_ttl",), "message_ttl must be a duration such as 30s or 1h")
        if f.valid:
            rules.append(LimitRule(f.name("match"), size, tuple(required),
                                   tuple(t.lower() for t in types), ttl))
    return rules


def parse_priority(doc: Document, raw: Any, problems: list[Problem]) -> list[PriorityRule]:
    rules: list[PriorityRule] = []
    for f in Fields.rules(doc, "priority", raw, problems, allowed={"match", "priority"},
                          what="priority rule"):
        value = f.get("priority", int, 0, required=True)
        if not 0 <= value <= 255:
            f.fail(("priority",), "priority must be between 0 and 255")
        if f.valid:
            rules.append(PriorityRule(f.name("match"), value))
    return rules
