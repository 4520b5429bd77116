"""Stage "policy": who may publish what, input limits, and the priority of copies (pure).

The rules are frozen values parsed by ``router.config.admission_rules`` (which
documents the ``authorization``, ``limits`` and ``priority`` sections); here they
are only applied: ``admit`` says whether a message may go on, ``copy_overrides``
what its routed copies carry.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from router.config.admission_rules import Authorization, AuthRule, LimitRule, PriorityRule
from router.core.envelope import Envelope
from router.core.outcome import DeadLetter, Reason

__all__ = ["admit", "copy_overrides"]


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


