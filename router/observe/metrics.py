"""Prometheus metrics of one router, in a registry of its own.

Names follow Prometheus conventions (``_total`` counters, ``_seconds``
histograms, base units).  The ``type`` label holds only types known to the
schema registry, so hostile input cannot explode label cardinality.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

__all__ = ["Metrics"]

UNKNOWN = "_unknown"

# The *_created series double the exposition for nothing Prometheus needs.
disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    # Extra sinks for histogram observations (OTLP export), called as (name, value).
    mirrors: list[Callable[[str, float], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._children: dict[tuple[object, ...], Any] = {}
        self._register_message_metrics(self.registry)
        self._register_state_metrics(self.registry)

    def _register_message_metrics(self, r: CollectorRegistry) -> None:
        """What happens to messages and their copies: counts and timings."""
        self.messages = Counter("mcp_router_messages_total",
                                "Ingress messages settled, by outcome and message type",
                                ["outcome", "type"], registry=r)
        self.copies = Counter("mcp_router_copies_total",
                              "Routed copies, by route and result", ["route", "result"], registry=r)
        self.dead_letters = Counter("mcp_router_dead_letters_total",
                                    "Dead letters published, by reason", ["reason"], registry=r)
        self.malformed_deliveries = Counter(
            "mcp_router_malformed_deliveries_total",
            "Deliveries whose properties did not decode (undecodable), cannot be sent on "
            "(unsendable), or whose dead letter could not be encoded either (rejected)",
            ["problem"], registry=r)
        self.publish_retries = Counter("mcp_router_publish_retries_total",
                                       "In-process publish retries", registry=r)
        self.processing = Histogram("mcp_router_processing_seconds",
                                    "Time from delivery to settlement decision confirmed",
                                    buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25,
                                             .5, 1, 2.5, 5, 10), registry=r)
        self.age = Histogram("mcp_router_message_age_seconds",
                             "End-to-end age of an ingress message when the router handles it "
                             "(now minus its AMQP timestamp property, when set)",
                             buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60,
                                      300, 900, 3600), registry=r)
        self.in_flight = Gauge("mcp_router_in_flight_messages",
                               "Ingress messages being processed", registry=r)
        self.shadow_copies = Counter("mcp_router_shadow_copies_total",
                                     "Shadow copies, by route, branch and result (delivered, "
                                     "failed, dropped)", ["route", "branch", "result"],
                                     registry=r)
        # Per route branch (copies, share, skips, keyless) are counted by router.runtime.loads
        # and exposed when scraped: nothing per message here.

    def _register_state_metrics(self, r: CollectorRegistry) -> None:
        """The state of the router's surroundings: broker, reloads, breakers, services."""
        self.sessions_lost = Counter("mcp_router_broker_sessions_lost_total",
                                     "Broker sessions that ended on a lost connection",
                                     registry=r)
        self.reloads = Counter("mcp_router_config_reloads_total",
                               "Configuration reloads, by result (ok, failed)", ["result"],
                               registry=r)
        self.circuit_state = Gauge("mcp_router_circuit_state",
                                   "Circuit breaker of a destination: 0 closed, 1 half-open, "
                                   "2 open", ["destination"], registry=r)
        self.circuit_transitions = Counter("mcp_router_circuit_transitions_total",
                                           "Circuit breaker state changes, by destination and "
                                           "new state", ["destination", "state"], registry=r)
        self.service_instances = Gauge("mcp_router_service_instances",
                                       "Live service instances heard on the control exchange, "
                                       "by service name", ["service"], registry=r)
        self.route_consumed = Gauge("mcp_router_route_consumed",
                                    "1 while a live service consumes what the route sends, "
                                    "0 while none does", ["route"], registry=r)
        self.connected = Gauge("mcp_router_broker_connected",
                               "1 while connected to the broker with the topology declared",
                               registry=r)

    def message(self, outcome: str, message_type: str) -> None:
        """Count one settled ingress message."""
        self._child(self.messages, outcome, message_type).inc()

    def copy(self, route: str, result: str) -> None:
        """Count one routed copy."""
        self._child(self.copies, route, result).inc()

    def shadow(self, route: str, branch: str, result: str) -> None:
        """Count a shadow copy's fate."""
        self._child(self.shadow_copies, route, branch, result).inc()

    def shadows(self) -> dict[str, dict[str, dict[str, float]]]:
        """Shadow copies so far: route -> branch -> result -> count (for a console)."""
        found: dict[str, dict[str, dict[str, float]]] = {}
        for family in self.shadow_copies.collect():
            for s in family.samples:
                if s.name.endswith("_total"):
                    found.setdefault(s.labels["route"], {}).setdefault(
                        s.labels["branch"], {})[s.labels["result"]] = s.value
        return found

    def dead_letter(self, reason: str) -> None:
        """Count one dead letter."""
        self._child(self.dead_letters, reason).inc()

    def malformed_delivery(self, problem: str) -> None:
        """Count one delivery whose properties are broken on the wire."""
        self._child(self.malformed_deliveries, problem).inc()

    def observe_processing(self, seconds: float) -> None:
        """Time one delivery took, from arrival to settlement decided."""
        self.processing.observe(seconds)
        for mirror in self.mirrors:
            mirror("mcp_router_processing_seconds", seconds)

    def observe_age(self, seconds: float) -> None:
        """How old a message was when the router handled it."""
        self.age.observe(max(seconds, 0.0))
        for mirror in self.mirrors:
            mirror("mcp_router_message_age_seconds", max(seconds, 0.0))

    def _child(self, metric: Counter | Gauge, *labels: str) -> Any:
        # prometheus_client's labels() takes a lock and validates every call;
        # the children are cached here, which matters at thousands of messages/s.
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
