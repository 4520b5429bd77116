"""Policies written as files in ``policies/*.yaml``.

Each file is a mapping of policy sections.  Sections known today:

``retry``
    A list of rules, first match wins (files read in name order)::

        retry:
          - match: "Order*"        # glob on the message type
            attempts: 3            # in-process publish attempts per copy (tenacity)
            backoff: {initial: 50ms, multiplier: 2, max: 500ms}
            delays: [1s, 10s, 1m]  # then delayed redelivery on the broker, one
                                   # round per delay; then the dead-letter exchange

    Without a matching rule, ``DEFAULT_RETRY`` applies: 3 attempts 50 ms and
    100 ms apart, then the broker after 1 s, 10 s and 1 min.  In-process retries
    hold the ingress delivery unacknowledged, so their total wait is capped
    (``MAX_IN_PROCESS_WAIT``) far below RabbitMQ's consumer timeout; longer
    waits belong on the broker (``delays``), where they survive restarts.

``authorization``, ``limits``, ``priority``
    Admission rules: ``router.core.admission``.
``rate_limits``
    Token buckets: ``router.core.ratelimit``.
``circuit_breakers``
    Per destination: ``router.core.breakers``.
``unconsumed``
    Routes without a live consumer: ``router.discovery.registry``.
``encryption``
    Which key seals sensitive fields, and who reads them plain: ``router.config.encryption``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from router.config.durations import parse_duration
from router.config.encryption import Encryption, parse_encryption
from router.config.fields import Fields
from router.config.source import Document, load_yaml
from router.core.admission import (
    Authorization,
    LimitRule,
    PriorityRule,
    parse_authorization,
    parse_limits,
    parse_priority,
)
from router.core.breakers import BreakerRule, parse_circuit_breakers
from router.core.ratelimit import RateRule, parse_rate_limits
from router.discovery.registry import UnconsumedRule, parse_unconsumed
from router.errors import Problem

__all__ = ["DEFAULT_RETRY", "Policies", "RetryPolicy", "load_policies", "parse_duration"]

MAX_ATTEMPTS = 20  # in process; longer waits belong on the broker
MAX_IN_PROCESS_WAIT = 10.0  # seconds, summed over all backoff sleeps of one copy
MAX_ROUNDS = 50  # broker-tier rounds per copy
MIN_DELAY, MAX_DELAY = 0.001, 7 * 24 * 3600.0  # a broker delay: 1 ms to a week


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed publish of one copy is retried in process."""

    attempts: int = 3
    initial: float = 0.05
    multiplier: float = 2.0
    max: float = 0.5
    delays: tuple[float, ...] = (1.0, 10.0, 60.0)  # broker tier, one round each

    def backoff_delays(self) -> list[float]:
        """The sleeps between attempts, in order (one fewer than ``attempts``)."""
        delays, delay = [], self.initial
        for _ in range(self.attempts - 1):
            delays.append(min(delay, self.max))
            delay = min(delay * self.multiplier, self.max)  # never overflows
        return delays


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class RetryRule:
    match: str
    policy: RetryPolicy


@dataclass(frozen=True)
class Policies:
    """All policy rules, in the order they apply."""

    retry: tuple[RetryRule, ...] = ()
    authorization: Authorization = field(default_factory=Authorization)
    limits: tuple[LimitRule, ...] = ()
    priority: tuple[PriorityRule, ...] = ()
    rate_limits: tuple[RateRule, ...] = ()
    circuit_breakers: tuple[BreakerRule, ...] = ()
    unconsumed: tuple[UnconsumedRule, ...] = ()
    encryption: Encryption = field(default_factory=Encryption)

    def broker_delays(self) -> tuple[float, ...]:
        """Every distinct broker-tier delay in use (default policy included), ascending."""
        delays = set(DEFAULT_RETRY.delays)
        for rule in self.retry:
            delays.update(rule.policy.delays)
        delays.update(r.shape_delay for r in self.rate_limits if r.on_excess == "shape")
        delays.update(r.wait for r in self.circuit_breakers)
        delays.update(r.wait for r in self.unconsumed if r.action == "wait")
        return tuple(sorted(delays))

    def retry_for(self, message_type: str) -> RetryPolicy:
        """The retry policy of the first rule whose glob matches ``message_type``."""
        for rule in self.retry:
            if fnmatch.fnmatchcase(message_type, rule.match):
                return rule.policy
        return DEFAULT_RETRY


def _duration(f: Fields, key: str, default: float) -> float:
    if key not in f.data:
        return default
    seconds = parse_duration(f.data[key])
    if seconds is None:
        f.fail((key,), f"{key!r} must be a duration such as 50ms, 2s or 1m")
        return default
    return seconds


def _delays(f: Fields) -> tuple[float, ...]:
    raw = f.get("delays", list, list(DEFAULT_RETRY.delays))
    delays: list[float] = []
    for i, value in enumerate(raw):
        seconds = parse_duration(value)
        if seconds is None or not MIN_DELAY <= seconds <= MAX_DELAY:
            f.fail(("delays", i), "each delay must be a duration from 1ms to 7d, "
                                  "such as 500ms, 10s or 5m")
            continue
        delays.append(round(seconds, 3))
    if len(delays) > MAX_ROUNDS:
        f.fail(("delays",), f"at most {MAX_ROUNDS} delays")
    return tuple(delays)


def _parse_retry_rule(doc: Document, i: int, raw: Any, problems: list[Problem]) -> RetryRule | None:
    f = Fields.of(doc, ("retry", i), raw, problems,
                  allowed={"match", "attempts", "backoff", "delays"}, what="retry rule")
    if not f.valid:
        return None
    match = f.name("match")
    attempts = f.get("attempts", int, DEFAULT_RETRY.attempts)
    if not 1 <= attempts <= MAX_ATTEMPTS:
        f.fail(("attempts",), f"attempts must be between 1 and {MAX_ATTEMPTS}")
        attempts = DEFAULT_RETRY.attempts
    initial, multiplier = DEFAULT_RETRY.initial, DEFAULT_RETRY.multiplier
    maximum = DEFAULT_RETRY.max
    if "backoff" in f.data:
        b = Fields.of(doc, ("retry", i, "backoff"), f.data["backoff"], problems,
                      allowed={"initial", "multiplier", "max"}, what="backoff")
        if b.valid:
            initial = _duration(b, "initial", initial)
            maximum = _duration(b, "max", maximum)
            multiplier = b.get("multiplier", float, multiplier)
            if multiplier < 1:
                b.fail(("multiplier",), "multiplier must be at least 1")
        f.valid &= b.valid
    policy = RetryPolicy(attempts, initial, multiplier, maximum, _delays(f))
    if f.valid and sum(policy.backoff_delays()) > MAX_IN_PROCESS_WAIT:
        f.fail((), f"in-process retries would wait {sum(policy.backoff_delays()):.1f}s in total; "
                   f"keep them under {MAX_IN_PROCESS_WAIT:.0f}s (the delivery stays unacked)")
    return RetryRule(match, policy) if f.valid else None


@dataclass
class _Collected:
    retry: list[RetryRule] = field(default_factory=list)
    authorization: list[tuple[Document, Authorization]] = field(default_factory=list)
    limits: list[LimitRule] = field(default_factory=list)
    priority: list[PriorityRule] = field(default_factory=list)
    rate_limits: list[RateRule] = field(default_factory=list)
    circuit_breakers: list[BreakerRule] = field(default_factory=list)
    unconsumed: list[UnconsumedRule] = field(default_factory=list)
    encryption: list[tuple[Document, Encryption]] = field(default_factory=list)


def _parse_file(doc: Document, found: _Collected, problems: list[Problem]) -> None:
    if doc.data is None:
        return
    top = Fields.of(doc, (), doc.data, problems,
                    allowed={"retry", "authorization", "limits", "priority", "rate_limits",
                             "circuit_breakers", "unconsumed", "encryption"},
                    what="policy file")
    if not top.valid:
        return
    raw_rules = top.get("retry", list, [])
    parsed = [_parse_retry_rule(doc, i, raw, problems) for i, raw in enumerate(raw_rules)]
    found.retry.extend(rule for rule in parsed if rule is not None)
    if "authorization" in top.data:
        found.authorization.append(
            (doc, parse_authorization(doc, top.data["authorization"], problems)))
    if "limits" in top.data:
        found.limits.extend(parse_limits(doc, top.data["limits"], problems, parse_duration))
    if "priority" in top.data:
        found.priority.extend(parse_priority(doc, top.data["priority"], problems))
    if "rate_limits" in top.data:
        found.rate_limits.extend(parse_rate_limits(doc, top.data["rate_limits"], problems,
                                                   parse_duration))
    if "circuit_breakers" in top.data:
        found.circuit_breakers.extend(parse_circuit_breakers(
            doc, top.data["circuit_breakers"], problems, parse_duration))
    if "unconsumed" in top.data:
        found.unconsumed.extend(parse_unconsumed(doc, top.data["unconsumed"], problems,
                                                 parse_duration))
    if "encryption" in top.data:
        found.encryption.append((doc, parse_encryption(doc, top.data["encryption"], problems)))


def load_policies(policies_dir: Path, display: str = "policies") -> tuple[Policies, list[Problem]]:
    """Read every ``*.yaml``/``*.yml`` file in ``policies_dir`` (absent means no policies)."""
    problems: list[Problem] = []
    if not policies_dir.is_dir():
        return Policies(), problems
    found = _Collected()
    files = sorted(p for p in policies_dir.iterdir() if p.suffix in (".yaml", ".yml"))
    for file in files:
        loaded = load_yaml(file, f"{display}/{file.name}")
        if isinstance(loaded, Problem):
            problems.append(loaded)
            continue
        _parse_file(loaded, found, problems)
    authorization = Authorization()
    if found.authorization:
        authorization = found.authorization[0][1]
        for doc, _ in found.authorization[1:]:
            first = Path(found.authorization[0][0].file).name
            problems.append(doc.problem(("authorization",), "authorization is already defined "
                                        f"in policies/{first}; keep one"))
    for doc, _ in found.encryption[1:]:
        problems.append(doc.problem(("encryption",), "encryption is already defined in "
                                    f"{found.encryption[0][1].where}; keep one"))
    encryption = found.encryption[0][1] if found.encryption else Encryption()
    return Policies(tuple(found.retry), authorization, tuple(found.limits),
                    tuple(found.priority), tuple(found.rate_limits),
                    tuple(found.circuit_breakers), tuple(found.unconsumed),
                    encryption), problems
