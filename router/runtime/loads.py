"""What least_loaded routes know of their queues, and what every branch took (metrics).

``LoadBoard`` is the router's memory between two looks of the queue watcher
(``router.broker.queuewatch``): the depth and consumers each watched queue had when
last looked at, plus the copies this router sent there since (a look that is
a second old would otherwise send every copy of that second to the queue
that looked emptiest).  ``view`` freezes that, with the breakers that should
be passed by, into a ``LoadView`` for ``router.core.choose``; a look older than
``STALE_LOOKS`` intervals (the watcher is stuck, the broker slow) is left out,
and least_loaded then spreads evenly.  ``took`` counts each message's branch
copies: per branch, the share actually taken, the branches skipped and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from router.config.alternatives import watched_queues
from router.config.configuration import Config
from router.config.route_table import RouteTable
from router.config.topology import Topology
from router.core.breakers import Breakers, QueueStatus
from router.core.choose import NO_VIEW, LoadView, QueueLoad
from router.core.outcome import Forward, Outcome
from router.observe.metrics import Metrics

__all__ = ["STALE_LOOKS", "LoadBoard"]

STALE_LOOKS = 3  # a look this many intervals old (plus a second) is no longer believed
STALE_MARGIN = 1.0


@dataclass(frozen=True, slots=True)
class _Layout:
    """Per configuration: the queues to watch and, per (route, branch), the queues it feeds
    and the destinations whose breakers least_loaded asks about."""

    watched: dict[str, float]
    feeds: dict[tuple[str, str], tuple[str, ...]]
    targets: tuple[tuple[str, str], ...]
    branches: dict[str, tuple[str, ...]]  # route -> its alternatives' names


def _layout(router: RouteTable, topology: Topology) -> _Layout:
    feeds: dict[tuple[str, str], tuple[str, ...]] = {}
    targets: list[tuple[str, str]] = []
    branches: dict[str, tuple[str, ...]] = {}
    for route in router.routes:
        alternatives = route.alternatives
        if alternatives is None:
            continue
        branches[route.spec.name] = tuple(b.name for b in alternatives.branches)
        # queues is empty unless least_loaded: no feeds then
        for branch, queues in zip(alternatives.branches, alternatives.queues, strict=False):
            feeds[route.spec.name, branch.name] = queues
        targets += alternatives.targets
    return _Layout(watched_queues(topology), feeds, tuple(dict.fromkeys(targets)), branches)


@dataclass(eq=False)  # hashable by identity: the metrics registry holds it as a collector
class LoadBoard:
    """Queue looks, copies sent since, and the branch metrics of one router."""

    metrics: Metrics
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, tuple[float, QueueStatus | None]] = field(default_factory=dict)
    _pending: dict[str, int] = field(default_factory=dict)
    _taken: dict[tuple[str, str], int] = field(default_factory=dict)  # (route, branch)
    _skips: dict[tuple[str, str, str], int] = field(default_factory=dict)  # ... and why
    _keyless: dict[str, int] = field(default_factory=dict)  # route
    _layouts: tuple[RouteTable, _Layout] | None = None

    def __post_init__(self) -> None:
        self.metrics.registry.register(self)  # a Collector: its collect() is scraped

    def layout(self, router: RouteTable, topology: Topology) -> _Layout:
        """The watched queues and feeds of a configuration (computed once per reload)."""
        if self._layouts is None or self._layouts[0] is not router:
            self._layouts = (router, _layout(router, topology))
        return self._layouts[1]

    def observe(self, queue: str, status: QueueStatus | None, now: float) -> None:
        """The watcher looked at ``queue``; what was sent before the look is in its depth."""
        self._seen[queue] = (now, status)
        self._pending[queue] = 0

    def view(self, config: Config, breakers: Callable[[], Breakers]) -> LoadView:
        """What least_loaded may believe now: fresh looks, and breakers to pass by
        (``NO_VIEW`` when no route of ``config`` is least_loaded)."""
        if not config.router.load_aware:
            return NO_VIEW
        layout = self.layout(config.router, config.topology)
        now = self.clock()
        loads: dict[str, QueueLoad | None] = {}
        for queue, every in layout.watched.items():
            seen = self._seen.get(queue)
            if seen is None or now - seen[0] > STALE_LOOKS * every + STALE_MARGIN:
                continue
            status = seen[1]
            loads[queue] = None if status is None else QueueLoad(
                status.messages + self._pending.get(queue, 0), status.consumers)
        blocked: dict[tuple[str, str], str] = {}
        board = breakers()
        if board.rules:
            for exchange, key in layout.targets:
                breaker = board.of(exchange, key, now)
                why = breaker.blocks(now) if breaker is not None else None
                if why is not None:
                    blocked[exchange, key] = why
        return LoadView(loads, blocked)

    def took(self, outcome: Outcome, config: Config) -> None:
        """Count the branch each copy of an alternative took, and what it skipped (a copy
        back from the retry tier only adds to its queues' depth)."""
        if not isinstance(outcome, Forward) or not config.router.branching:
            return
        layout = self.layout(config.router, config.topology)
        feeds = layout.feeds
        retried = outcome.retry is not None and bool(outcome.retry.route)
        for copy in outcome.copies:
            if copy.branch is None or copy.shadow:
                continue
            for queue in feeds.get((copy.route, copy.branch), ()):
                self._pending[queue] = self._pending.get(queue, 0) + 1
            if retried:  # the same copy again: its choice was counted the first time
                continue
            for skipped, why in copy.skipped:
                self._skips[copy.route, skipped, why] = \
                    self._skips.get((copy.route, skipped, why), 0) + 1
            if copy.keyless:
                self._keyless[copy.route] = self._keyless.get(copy.route, 0) + 1
            self._taken[copy.route, copy.branch] = \
                self._taken.get((copy.route, copy.branch), 0) + 1

    def snapshot(self) -> dict[str, dict[str, dict[str, object]]]:
        """Per route, per alternative: copies taken, share, skips by reason and the queue
        figures least_loaded last saw (for a console's flow page)."""
        found: dict[str, dict[str, dict[str, object]]] = {}
        if self._layouts is None:
            return found
        layout = self._layouts[1]
        for route, names in layout.branches.items():
            total = sum(self._taken.get((route, name), 0) for name in names)
            found[route] = {}
            for name in names:
                taken = self._taken.get((route, name), 0)
                queues = {q: (None if (seen := self._seen.get(q)) is None or seen[1] is None
                              else {"messages": seen[1].messages,
                                    "consumers": seen[1].consumers,
                                    "sent_since": self._pending.get(q, 0)})
                          for q in layout.feeds.get((route, name), ())}
                found[route][name] = {
                    "copies": taken, "share": taken / total if total else 0.0,
                    "skips": {why: n for (r, b, why), n in self._skips.items()
                              if r == route and b == name},
                    "queues": queues}
        return found

    def collect(self) -> Iterator[Metric]:
        """The branch metrics, computed when scraped (nothing per message)."""
        copies = CounterMetricFamily("mcp_router_branch_copies",
                                     "Copies each alternative of a route took, by route and "
                                     "branch", labels=["route", "branch"])
        share = GaugeMetricFamily("mcp_router_branch_share",
                                  "Share of a route's copies each alternative took since the "
                                  "router started (0 to 1)", labels=["route", "branch"])
        layout = self._layouts[1] if self._layouts is not None else None
        for route, names in (layout.branches.items() if layout is not None else ()):
            total = sum(self._taken.get((route, name), 0) for name in names)
            for name in names:
                taken = self._taken.get((route, name), 0)
                copies.add_metric([route, name], taken)
                share.add_metric([route, name], taken / total if total else 0.0)
        skips = CounterMetricFamily("mcp_router_branch_skips",
                                    "Alternatives least_loaded passed by, by route, branch and "
                                    "reason (circuit_open, no_consumer, no_queue)",
                                    labels=["route", "branch", "reason"])
        for (route, branch, why), count in self._skips.items():
            skips.add_metric([route, branch, why], count)
        keyless = CounterMetricFamily("mcp_router_branch_keyless",
                                      "Copies whose route key could not be read (the message "
                                      "id chose the branch), by route", labels=["route"])
        for route, count in self._keyless.items():
            keyless.add_metric([route], count)
        yield from (copies, share, skips, keyless)
