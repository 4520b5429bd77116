"""The ``retry`` section of ``policies/*.yaml``, parsed into frozen policies.

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

The decisions over these policies (the next step after a failed round, the
retry headers) are ``router.core.ladder``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.config.durations import parse_duration
from router.config.fields import Fields, Shape
from router.config.source import Document
from router.errors import Problem

__all__ = ["DEFAULT_RETRY", "MAX_ATTEMPTS", "MAX_IN_PROCESS_WAIT", "MAX_ROUNDS", "RetryPolicy",
           "RetryRule", "parse_retry_rule", "retry_queue_name"]

MIN_DELAY, MAX_DELAY = 0.001, 7 * 24 * 3600.0  # a broker delay: 1 ms to a week


MAX_ATTEMPTS = 20  # in process; longer waits belong on the broker


MAX_IN_PROCESS_WAIT = 10.0  # seconds, summed over all backoff sleeps of one copy


MAX_ROUNDS = 50  # broker-tier rounds per copy


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


def parse_retry_rule(doc: Document, i: int, raw: Any, problems: list[Problem]) -> RetryRule | None:
    """The ``i``-th rule of a ``retry`` list, or None with its problems recorded."""
    f = Fields.of(doc, ("retry", i), raw, problems,
                  shape=Shape({"match", "attempts", "backoff", "delays"}, "retry rule"))
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
                      shape=Shape({"initial", "multiplier", "max"}, "backoff"))
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


def retry_queue_name(ingress_queue: str, delay: float) -> str:
    """The TTL queue for one delay, e.g. ``mcp.router.ingress.retry.10000ms``."""
    return f"{ingress_queue}.retry.{round(delay * 1000)}ms"
