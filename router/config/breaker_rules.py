"""The ``circuit_breakers`` section of ``policies/*.yaml``, parsed into frozen rules.

A *destination* is where a routed copy is published: an exchange and a
routing key.  First matching rule wins::

    circuit_breakers:
      - exchange: "orders"         # glob on the destination exchange
        routing_key: "order.*"     # glob on its routing key (default: any)
        failures: 5                # consecutive refused publishes that open it
        max_depth: 10000           # open while a queue it feeds holds more messages
        require_consumers: true    # open while a queue it feeds has no consumer
        queues: [billing.orders]   # the queues to watch (default: those the topology
                                   # binds so that the destination reaches them)
        open_for: 30s              # open this long before a half-open probe
        wait: 5s                   # how long a held copy waits in the broker's retry tier
        check_every: 5s            # how often the watched queues are looked at

The breakers' states and transitions are ``router.core.breakers``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from router.config.durations import parse_duration
from router.config.fields import Fields, Shape
from router.config.source import Document
from router.config.topology import Topology
from router.errors import Problem

__all__ = ["MAX_WAIT", "MIN_WAIT", "BreakerRule", "check_breakers", "parse_circuit_breakers"]

MIN_WAIT, MAX_WAIT = 0.001, 24 * 3600.0


@dataclass(frozen=True, slots=True)
class BreakerRule:
    """One breaker rule: the destinations it guards, what opens it, and its timings."""

    exchange: str  # glob
    routing_key: str  # glob
    failures: int
    max_depth: int | None
    require_consumers: bool
    queues: tuple[str, ...] | None  # None: derived from the topology's bindings
    open_for: float
    wait: float
    check_every: float
    where: str

    @property
    def watches(self) -> bool:
        """Whether queues must be looked at (depth or consumers)."""
        return self.max_depth is not None or self.require_consumers

    def covers(self, exchange: str, routing_key: str) -> bool:
        return fnmatch.fnmatchcase(exchange, self.exchange) and \
            fnmatch.fnmatchcase(routing_key, self.routing_key)


def parse_circuit_breakers(doc: Document, raw: Any, problems: list[Problem]) -> list[BreakerRule]:
    """The ``circuit_breakers`` section of one policy file."""
    rules: list[BreakerRule] = []
    for f in Fields.rules(doc, "circuit_breakers", raw, problems,
                          shape=Shape({"exchange", "routing_key", "failures", "max_depth",
                                   "require_consumers", "queues", "open_for", "wait",
                                   "check_every"}, "circuit breaker")):
        failures = f.get("failures", int, 5)
        if failures < 1:
            f.fail(("failures",), "failures must be at least 1")
        max_depth = f.get("max_depth", int, -1) if "max_depth" in f.data else None
        if max_depth is not None and max_depth < 0:
            f.fail(("max_depth",), "max_depth must be 0 or more")
        queues = f.get("queues", list, []) if "queues" in f.data else None
        if queues is not None and not all(isinstance(q, str) and q for q in queues):
            f.fail(("queues",), "queues must be a list of queue names")

        rule = BreakerRule(
            exchange=f.get("exchange", str, "", required=True),
            routing_key=f.get("routing_key", str, "*"),
            failures=failures, max_depth=max_depth,
            require_consumers=f.get("require_consumers", bool, False),
            queues=tuple(queues) if queues is not None else None,
            open_for=_seconds(f, "open_for", "30s", low=MIN_WAIT, high=MAX_WAIT),
            wait=_seconds(f, "wait", "5s", low=MIN_WAIT, high=MAX_WAIT),
            check_every=_seconds(f, "check_every", "5s", low=0.05, high=3600.0),
            where=f"policies/{PurePath(doc.file).name}:{f.line()}")
        if f.valid:
            rules.append(rule)
    return rules


def _seconds(f: Fields, key: str, default: str, *, low: float, high: float) -> float:
    """A duration from ``low`` to ``high`` seconds (ms precision), or a located problem."""
    value = parse_duration(f.data.get(key, default))
    if value is None or not low <= value <= high:
        f.fail((key,), f"{key} must be a duration such as 500ms, 5s or 1m "
                       f"(from {low:g}s to {high:g}s)")
        return low
    return round(value, 3)


def check_breakers(topology: Topology, rules: tuple[BreakerRule, ...],
                   display: Callable[[str], str]) -> list[Problem]:
    """Breaker rules must name queues that exist and cover some route destination."""
    problems: list[Problem] = []
    queues = {q.name: q for q in topology.all_queues()}
    destinations = {d.exchange for r in topology.routes for d in r.destinations()}
    for rule in rules:
        file, _, line = rule.where.rpartition(":")
        where = (display(file), int(line) if line.isdigit() else None)
        for name in rule.queues or ():
            if name not in queues:
                problems.append(Problem(where[0], f"circuit breaker: queue {name!r} is not "
                                                  "declared in topology.yaml", where[1]))
            elif queues[name].type == "stream" and rule.watches:
                problems.append(Problem(where[0], f"circuit breaker: queue {name!r} is a "
                                                  "stream; its depth and consumers say nothing "
                                                  "about delivery", where[1]))
        if not any(fnmatch.fnmatchcase(e, rule.exchange) for e in destinations):
            problems.append(Problem(where[0], f"circuit breaker: exchange {rule.exchange!r} "
                                              "matches no route destination", where[1]))
    return problems
