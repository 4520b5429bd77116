"""Circuit breakers per destination (pure: the clock is passed in, no I/O).

A *destination* is where a routed copy is published: an exchange and a
routing key; its rules are frozen values parsed by ``router.config.breaker_rules``.

States follow the usual pattern (Nygard, *Release It!*):

``closed``
    copies are published; ``failures`` consecutive refusals (returned as
    unroutable, or nacked: a full queue with ``reject-publish``) open it; so
    does a watched queue over ``max_depth`` or without consumers.
``open``
    no copy is published: each waits ``wait`` in the broker's retry tier and
    is routed again, without spending a retry round, so nothing piles up in
    the router and nothing is dropped.
``half_open``
    after ``open_for`` (failure-opened) or once the watched queues are
    healthy again (condition-opened), one copy at a time is let through as a
    probe; its success closes the breaker, its failure opens it again.

Breakers live in each router process; with several replicas each one opens
on what it sees itself.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from router.config.breaker_rules import BreakerRule
from router.config.reach import queues_reached
from router.config.topology import Topology, is_glob
from router.core.counts import plural

__all__ = [
    "Admission",
    "Breaker",
    "BreakerBoard",
    "Breakers",
    "QueueStatus",
    "State",
]



class State(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


class Admission(Enum):
    ALLOW = "allow"  # closed: publish
    PROBE = "probe"  # half-open: publish as the probe and report the result
    WAIT = "wait"  # open (or a probe is out): park the copy


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """What a passive ``queue.declare`` said about a queue (``None``: it does not exist)."""

    messages: int
    consumers: int


def queue_problem(rule: BreakerRule, queue: str, status: QueueStatus | None) -> str | None:
    """Why ``queue`` should keep the breaker open under ``rule``, or None if it is healthy."""
    if status is None:
        return f"queue {queue!r} does not exist"
    if rule.max_depth is not None and status.messages > rule.max_depth:
        return f"queue {queue!r} holds {status.messages} messages (limit {rule.max_depth})"
    if rule.require_consumers and status.consumers == 0:
        return f"queue {queue!r} has no consumers"
    return None


@dataclass
class Breaker:
    """The breaker of one destination."""

    destination: str
    rule: BreakerRule
    queues: tuple[str, ...]
    state: State = State.CLOSED
    reason: str | None = None
    since: float = 0.0  # when the state was entered
    failures: int = 0  # consecutive
    conditions: dict[str, str] = field(default_factory=dict)  # queue -> problem
    _probe_since: float | None = None
    on_change: Callable[[Breaker, State], None] = lambda _breaker, _old: None

    def admit(self, now: float) -> Admission:
        """Whether a copy may be published now."""
        if self.state is State.OPEN and not self.conditions \
                and now - self.since >= self.rule.open_for:
            self._enter(State.HALF_OPEN, now, self.reason)
        if self.state is State.CLOSED:
            return Admission.ALLOW
        if self.state is State.HALF_OPEN and (
                self._probe_since is None or now - self._probe_since >= self.rule.open_for):
            self._probe_since = now  # a probe that never reported is replaced
            return Admission.PROBE
        return Admission.WAIT

    def blocks(self, now: float) -> str | None:
        """Why a load-aware choice should pass this destination by now, or None.

        Unlike ``admit`` it changes nothing: an open breaker whose ``open_for``
        is over (or a half-open one without a probe out) takes the next copy,
        which ``admit`` then lets through as the probe."""
        if self.state is State.OPEN and (self.conditions or now - self.since < self.rule.open_for):
            return self.reason or "open"
        if self.state is State.HALF_OPEN and self._probe_since is not None \
                and now - self._probe_since < self.rule.open_for:
            return f"a probe is out ({self.reason})"
        return None

    def succeeded(self, admission: Admission, now: float) -> None:
        """A copy admitted as ``admission`` was confirmed."""
        self.failures = 0
        if admission is Admission.PROBE and self.state is State.HALF_OPEN and not self.conditions:
            self._enter(State.CLOSED, now, None)

    def failed(self, admission: Admission, now: float, error: str) -> None:
        """A copy was refused by the broker for a reason that belongs to the destination."""
        self.failures += 1
        if admission is Admission.PROBE and self.state is State.HALF_OPEN:
            self._enter(State.OPEN, now, f"probe failed: {error}")
        elif self.state is State.CLOSED and self.failures >= self.rule.failures:
            refused = plural(self.failures, "consecutive publish", "consecutive publishes")
            self._enter(State.OPEN, now, f"{refused} refused; last: {error}")

    def released(self, admission: Admission) -> None:
        """A probe ended without telling anything about the destination (broker unusable)."""
        if admission is Admission.PROBE:
            self._probe_since = None

    def observe(self, queue: str, problem: str | None, now: float) -> None:
        """The watcher looked at ``queue``: ``problem`` says why it is unhealthy, or None."""
        if problem is None:
            self.conditions.pop(queue, None)
        else:
            self.conditions[queue] = problem
        if self.conditions and self.state is not State.OPEN:
            self._enter(State.OPEN, now, "; ".join(sorted(self.conditions.values())))
        elif not self.conditions and self.state is State.OPEN and self.failures == 0:
            # The watcher's look was the probe of the queue; one copy probes the rest.
            self._enter(State.HALF_OPEN, now, self.reason)
        elif self.conditions and self.state is State.OPEN:
            self.reason = "; ".join(sorted(self.conditions.values()))

    def _enter(self, state: State, now: float, reason: str | None) -> None:
        old = self.state
        self.state, self.reason, self.since, self._probe_since = state, reason, now, None
        if state is State.CLOSED:
            self.failures = 0
        if old is not state:
            self.on_change(self, old)

    def as_dict(self, now: float) -> dict[str, object]:
        return {"state": self.state.value, "reason": self.reason,
                "for_seconds": round(max(now - self.since, 0.0), 3),
                "consecutive_failures": self.failures, "queues": list(self.queues)}


class Breakers:
    """Every breaker of one configuration, created as destinations are first used."""

    def __init__(self, rules: tuple[BreakerRule, ...], topology: Topology,
                 on_change: Callable[[Breaker, State], None] = lambda _b, _o: None,
                 now: float = 0.0) -> None:
        self.rules = rules
        self.topology = topology
        self._on_change = on_change
        self._breakers: dict[tuple[str, str], Breaker | None] = {}
        self._health: dict[tuple[BreakerRule, str], str | None] = {}  # last problem seen
        self._streams = {q.name for q in topology.all_queues() if q.type == "stream"}
        self._watched = self._watched_queues()  # rules and topology never change
        if rules:  # the destinations known in advance show in metrics and /readyz at once
            for route in topology.routes:
                for to in route.destinations():
                    key = to.routing_key if to.routing_key is not None else route.message_type
                    if to.routing_key is not None or not is_glob(route.message_type):
                        self.of(to.exchange, key, now)

    def of(self, exchange: str, routing_key: str, now: float = 0.0) -> Breaker | None:
        """The breaker guarding a destination, or None when no rule covers it."""
        key = (exchange, routing_key)
        try:
            return self._breakers[key]
        except KeyError:
            pass
        breaker = None
        for rule in self.rules:
            if rule.covers(exchange, routing_key):
                queues = rule.queues if rule.queues is not None else \
                    self._watchable(queues_reached(self.topology, exchange, routing_key))
                breaker = Breaker(f"{exchange or '(default)'}/{routing_key}", rule, queues,
                                  since=now, on_change=self._on_change)
                self._on_change(breaker, State.CLOSED)  # announce it (metrics)
                for queue in queues:
                    if (rule, queue) in self._health:
                        breaker.observe(queue, self._health[rule, queue], now)
                break
        self._breakers[key] = breaker
        return breaker

    def _watchable(self, queues: tuple[str, ...]) -> tuple[str, ...]:
        # A stream's depth means nothing.
        return tuple(q for q in queues if q not in self._streams)

    def watched(self) -> dict[str, list[BreakerRule]]:
        """Queue -> the rules that watch it (for the watcher; depth and consumers only)."""
        return self._watched

    def _watched_queues(self) -> dict[str, list[BreakerRule]]:
        watched: dict[str, list[BreakerRule]] = {}
        for rule in self.rules:
            if not rule.watches:
                continue
            queues = rule.queues if rule.queues is not None else self._rule_queues(rule)
            for queue in queues:
                watched.setdefault(queue, []).append(rule)
        return watched

    def _rule_queues(self, rule: BreakerRule) -> tuple[str, ...]:
        """The queues bound to an exchange the rule covers (any binding key: a superset)."""
        found: list[str] = []
        for binding in self.topology.all_bindings():
            if fnmatch.fnmatchcase(binding.exchange, rule.exchange) and \
                    binding.queue not in found:
                found.append(binding.queue)
        return self._watchable(tuple(found))

    def observe(self, queue: str, status: QueueStatus | None, now: float) -> None:
        """Tell every breaker watching ``queue`` what the watcher saw."""
        for rule in self._watched.get(queue, ()):
            problem = self._health[rule, queue] = queue_problem(rule, queue, status)
            for breaker in self._breakers.values():
                if breaker is not None and breaker.rule == rule and queue in breaker.queues:
                    breaker.observe(queue, problem, now)

    def inherit(self, old: Breakers) -> None:
        """Keep what ``old`` saw of the queues for unchanged rules (a reload must not
        forget a queue without consumers)."""
        self._health.update({k: v for k, v in old._health.items()
                             if k[0] in self.rules})

    def snapshot(self, now: float) -> dict[str, dict[str, object]]:
        """Every breaker in use, by destination, for ``/readyz``."""
        return {b.destination: b.as_dict(now) for b in self._breakers.values() if b is not None}


class BreakerBoard:
    """The breakers of the configuration in force, rebuilt when a reload changes them."""

    def __init__(self, on_change: Callable[[Breaker, State], None] = lambda _b, _o: None,
                 ) -> None:
        self._on_change = on_change
        self.current = Breakers((), Topology(), on_change)

    def of(self, rules: tuple[BreakerRule, ...], topology: Topology,
           now: float = 0.0) -> Breakers:
        """The breakers for ``rules`` over ``topology`` (the same object while unchanged);
        ``now`` (monotonic) is when the new ones entered their first state."""
        current = self.current
        if current.rules is not rules or current.topology is not topology:
            current = Breakers(rules, topology, self._on_change, now)
            current.inherit(self.current)
            self.current = current
        return current
