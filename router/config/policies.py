"""Policies written as files in ``policies/*.yaml``.

Each file is a mapping of policy sections.  Sections known today:

``retry``
    In-process attempts and broker-tier delays: ``router.config.retry_policy``.
``authorization``, ``limits``, ``priority``
    Admission rules: ``router.config.admission_rules`` (applied by ``router.core.admission``).
``rate_limits``
    Token buckets: ``router.config.rate_rules`` (``router.core.ratelimit``).
``circuit_breakers``
    Per destination: ``router.config.breaker_rules`` (``router.core.breakers``).
``unconsumed``
    Routes without a live consumer: ``router.config.unconsumed_rules``.
``encryption``
    Which key seals sensitive fields, and who reads them plain: ``router.config.encryption``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from router.config.admission_rules import (
    Authorization,
    LimitRule,
    PriorityRule,
    parse_authorization,
    parse_limits,
    parse_priority,
)
from router.config.breaker_rules import BreakerRule, parse_circuit_breakers
from router.config.durations import parse_duration
from router.config.encryption import Encryption, parse_encryption
from router.config.fields import Fields, Shape
from router.config.rate_rules import Excess, RateRule, parse_rate_limits
from router.config.retry_policy import DEFAULT_RETRY, RetryPolicy, RetryRule, parse_retry_rule
from router.config.source import Document, load_yaml
from router.config.unconsumed_rules import UnconsumedAction, UnconsumedRule, parse_unconsumed
from router.errors import Problem

# RetryPolicy, DEFAULT_RETRY and parse_duration are re-exported: services import them here.
__all__ = ["DEFAULT_RETRY", "Policies", "RetryPolicy", "load_policies", "parse_duration"]


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
        delays.update(r.shape_delay for r in self.rate_limits if r.on_excess == Excess.SHAPE)
        delays.update(r.wait for r in self.circuit_breakers)
        delays.update(r.wait for r in self.unconsumed if r.action == UnconsumedAction.WAIT)
        return tuple(sorted(delays))

    def retry_for(self, message_type: str) -> RetryPolicy:
        """The retry policy of the first rule whose glob matches ``message_type``."""
        for rule in self.retry:
            if fnmatch.fnmatchcase(message_type, rule.match):
                return rule.policy
        return DEFAULT_RETRY


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
                    shape=Shape({"retry", "authorization", "limits", "priority", "rate_limits",
                             "circuit_breakers", "unconsumed", "encryption"}, "policy file"))
    if not top.valid:
        return
    raw_rules = top.get("retry", list, [])
    parsed = [parse_retry_rule(doc, i, raw, problems) for i, raw in enumerate(raw_rules)]
    found.retry.extend(rule for rule in parsed if rule is not None)
    if "authorization" in top.data:
        found.authorization.append(
            (doc, parse_authorization(doc, top.data["authorization"], problems)))
    if "limits" in top.data:
        found.limits.extend(parse_limits(doc, top.data["limits"], problems))
    if "priority" in top.data:
        found.priority.extend(parse_priority(doc, top.data["priority"], problems))
    if "rate_limits" in top.data:
        found.rate_limits.extend(parse_rate_limits(doc, top.data["rate_limits"], problems))
    if "circuit_breakers" in top.data:
        found.circuit_breakers.extend(parse_circuit_breakers(
            doc, top.data["circuit_breakers"], problems))
    if "unconsumed" in top.data:
        found.unconsumed.extend(parse_unconsumed(doc, top.data["unconsumed"], problems))
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
