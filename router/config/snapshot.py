"""The configuration in force: one directory's topology, routes, schemas, policies and
keys, as frozen values (built by ``router.config.configuration.load_config``).

Everything on the delivery path reads it; it imports no loader and no schema
checker, so importing it costs nothing at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from router.config.keys import KeySet
from router.config.policies import Policies
from router.config.retry_policy import retry_queue_name
from router.config.route_table import RouteTable
from router.config.schemas import SchemaRegistry
from router.config.topology import Queue, Topology

__all__ = ["Config"]


@dataclass(frozen=True)
class Config:
    """Topology, compiled routes, compiled schemas and policies of one directory."""

    directory: Path
    topology: Topology
    router: RouteTable
    registry: SchemaRegistry
    policies: Policies
    keys: KeySet = field(default_factory=KeySet)  # wrapped data keys (keys/): safe in git

    def retry_queues(self) -> tuple[Queue, ...]:
        """The broker-tier TTL queues every retry policy needs, one per delay."""
        ingress = self.topology.ingress.queue
        return tuple(self.topology.retry_queue(retry_queue_name(ingress, delay), delay)
                     for delay in self.policies.broker_delays())

    def broker_queues(self) -> tuple[Queue, ...]:
        """Every queue the router declares: the topology's and the retry queues."""
        return (*self.topology.all_queues(), *self.retry_queues())
