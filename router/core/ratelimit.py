"""Rate limits: token buckets per publisher and message type (decision pure, time injected).

The rules are frozen values parsed by ``router.config.rate_rules`` (which
documents the ``rate_limits`` section).  Buckets live in each router process
unless the rule is ``shared`` (then in Redis: ``router.runtime.sharedlimit``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from router.config.rate_rules import RateRule

__all__ = ["TokenBuckets"]


@dataclass
class TokenBuckets:
    """Buckets of one router; ``take`` says whether a message may pass now."""

    rules: tuple[RateRule, ...] = ()
    _state: dict[tuple[object, ...], tuple[float, float]] = field(default_factory=dict)

    def rule_for(self, message_type: str) -> tuple[int, RateRule] | None:
        """The first rule matching ``message_type``, with its index."""
        for index, rule in enumerate(self.rules):
            if fnmatch.fnmatchcase(message_type, rule.match):
                return index, rule
        return None

    def take(self, publisher: str | None, message_type: str, now: float) -> RateRule | None:
        """None if the message may pass (a token taken); else the rule it exceeds."""
        found = self.rule_for(message_type)
        if found is None:
            return None
        index, rule = found
        key = rule.key(index, publisher, message_type)
        tokens, last = self._state.get(key, (rule.burst, now))
        tokens = min(rule.burst, tokens + (now - last) * rule.rate)
        if tokens >= 1.0:
            self._state[key] = (tokens - 1.0, now)
            return None
        self._state[key] = (tokens, now)
        return rule


