"""Which routes have a live consumer, kept current from the announcements the router hears.

``Consumers`` holds the router's registry of service instances
(``router.discovery.registry``), recomputes the routes nobody consumes whenever an
instance comes, leaves or expires, and reports it in metrics and logs.  It
also answers, per copy, whether the ``unconsumed`` policy holds that copy
back; it never does before the router has listened for the rule's ``grace``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from router.config.configuration import Config
from router.config.topology import Topology
from router.config.unconsumed_rules import UnconsumedAction, UnconsumedRule, unconsumed_rule
from router.discovery.registry import Announcement, ServiceRegistry, unconsumed_routes
from router.observe.metrics import Metrics

__all__ = ["EXPIRY_CHECK", "Consumers"]

log = logging.getLogger("router.consumers")

EXPIRY_CHECK = 1.0  # seconds between looks for silent instances


@dataclass
class Consumers:
    """The live registry and the routes without a consumer, for one router."""

    metrics: Metrics
    topology: Callable[[], Topology]  # the configuration in force (reloads change it)
    clock: Callable[[], float] = time.monotonic
    services: ServiceRegistry = field(default_factory=ServiceRegistry)
    unconsumed: dict[str, str] = field(default_factory=dict)  # route -> why
    _since: float | None = None  # when the router started listening
    _names: set[str] = field(default_factory=set)  # services ever seen (their gauges)
    _consumed_once: set[str] = field(default_factory=set)  # routes that had a consumer

    def listening(self) -> None:
        """The router listens on the control exchange from now on (the first time counts)."""
        if self._since is None:
            self._since = self.clock()

    def heard(self, announcement: Announcement) -> None:
        if self.services.announce(announcement, self.clock()):
            log.info("service %s is live: instance %s reads %s", announcement.name,
                     announcement.instance, ", ".join(announcement.queues) or "no queue")
            self.refresh()

    def left(self, instance: str) -> None:
        gone = self.services.goodbye(instance)
        if gone is not None:
            log.info("service %s stopped: instance %s said goodbye", gone.name, instance)
            self.refresh()

    def refresh(self) -> None:
        """Recompute which routes have no live consumer; log and count the changes."""
        topology = self.topology()
        now_unconsumed = unconsumed_routes(topology, self.services.live())
        for route in topology.routes:
            was, now = route.name in self.unconsumed, route.name in now_unconsumed
            self.metrics.route_consumed.labels(route.name).set(0 if now else 1)
            if not now:
                if was:
                    log.info("route %s has a live consumer again", route.name)
                self._consumed_once.add(route.name)
            elif not was and self._listened(0.0):
                # Losing the last consumer is news; never having had one (a deployment
                # without SDK services) is not worth a warning per route.
                lost = route.name in self._consumed_once
                log.log(logging.WARNING if lost else logging.INFO,
                        "route %s has no live consumer: %s", route.name,
                        now_unconsumed[route.name])
        counts = dict.fromkeys(self._names, 0)  # gone services drop to 0
        for announcement in self.services.live():
            counts[announcement.name] = counts.get(announcement.name, 0) + 1
        for name, count in counts.items():
            self.metrics.service_instances.labels(name).set(count)
        self._names = set(counts)
        self.unconsumed = now_unconsumed

    def _listened(self, grace: float) -> bool:
        return self._since is not None and self.clock() - self._since >= grace

    async def watch(self) -> None:
        """Expire silent instances and keep the route flags current, until cancelled."""
        while True:
            for gone in self.services.expire(self.clock()):
                log.warning("service %s instance %s expired: no heartbeat for three "
                            "intervals", gone.name, gone.instance)
            self.refresh()
            await asyncio.sleep(EXPIRY_CHECK)

    def holds(self, route: str, message_type: str, config: Config) -> UnconsumedRule | None:
        """The ``unconsumed`` rule to apply to a copy of ``route``, or None to deliver it."""
        if route not in self.unconsumed:
            return None
        rule = unconsumed_rule(config.policies.unconsumed, message_type)
        if rule is None or rule.action == UnconsumedAction.DELIVER \
                or not self._listened(rule.grace):
            return None
        return rule

    def listing(self) -> dict[str, object]:
        """Live instances and routes without a consumer, for ``/services``."""
        return {"services": self.services.listing(self.clock()),
                "unconsumed_routes": dict(self.unconsumed)}
