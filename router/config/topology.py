"""The broker entities and routes declared in ``topology.yaml``, as frozen values.

``router.config.topology_parsing.parse_topology`` builds them from the file;
CEL expressions are compiled by ``router.config.route_table`` and evaluated by
``router.core.route``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from router.config.branches import Branch, Choice
from router.config.cloudevents_spec import CloudEventsSpec

__all__ = [
    "Binding",
    "ControlSpec",
    "DeadLetterSpec",
    "Destination",
    "Exchange",
    "IngressSpec",
    "Queue",
    "RouteSpec",
    "Topology",
    "is_glob",
]

EXCHANGE_TYPES = ("direct", "topic", "fanout", "headers")
QUEUE_TYPES = ("classic", "quorum", "stream")
DEFAULT_DELIVERY_LIMIT = 5
DLQ_DELIVERY_LIMIT = 1_000_000

Arguments = tuple[tuple[str, Any], ...]
_GLOB = re.compile(r"[*?\[]")


def is_glob(pattern: str) -> bool:
    """Whether a message-type pattern (fnmatch) can match more than one name."""
    return _GLOB.search(pattern) is not None


@dataclass(frozen=True, slots=True)
class Exchange:
    name: str
    type: str = "topic"
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    arguments: Arguments = ()


@dataclass(frozen=True, slots=True)
class Queue:
    name: str
    type: str = "quorum"
    durable: bool = True
    auto_delete: bool = False
    max_priority: int | None = None
    arguments: Arguments = ()

    def broker_arguments(self) -> dict[str, Any]:
        """The ``x-*`` arguments sent in ``queue.declare``."""
        args = dict(self.arguments)
        args["x-queue-type"] = self.type
        if self.max_priority is not None:
            args["x-max-priority"] = self.max_priority
        return args


@dataclass(frozen=True, slots=True)
class Binding:
    exchange: str
    queue: str
    routing_key: str = ""
    arguments: Arguments = ()


@dataclass(frozen=True, slots=True)
class Destination:
    exchange: str
    routing_key: str | None = None  # None: the message type


@dataclass(frozen=True, slots=True)
class RouteSpec:
    name: str
    message_type: str
    to: tuple[Destination, ...]
    when: str | None = None
    line: int | None = None  # where the route is written, for CEL errors
    version: int | None = None  # the schema version its copies carry (older ones upcast)
    choice: Choice | None = None  # alternatives: one of them gets each copy (router.core.choose)
    shadows: tuple[Branch, ...] = ()  # copies whose fate never touches the real ones

    format: str = "as-is"  # or cloudevents-binary / cloudevents-structured (router.core.cloudevent)

    def destinations(self) -> tuple[Destination, ...]:
        """Where its real copies may go: every ``to`` and every alternative."""
        branches = self.choice.branches if self.choice is not None else ()
        return (*self.to, *(Destination(b.exchange, b.routing_key) for b in branches))


@dataclass(frozen=True, slots=True)
class IngressSpec:
    exchange: str = "mcp.ingress"
    queue: str = "mcp.router.ingress"
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    replicas: int | None = None  # x-quorum-initial-group-size of it and its retry queues


@dataclass(frozen=True, slots=True)
class DeadLetterSpec:
    exchange: str = "mcp.dlx"
    queue: str = "mcp.dead-letters"
    replicas: int | None = None


def _replicas(count: int | None) -> Arguments:
    """How many cluster nodes a quorum queue is replicated on (default: RabbitMQ's)."""
    return () if count is None else (("x-quorum-initial-group-size", count),)


@dataclass(frozen=True, slots=True)
class ControlSpec:
    """The control exchange of service discovery: deployments with different names never
    hear each other, even on one virtual host."""

    exchange: str = "mcp.control"


@dataclass(frozen=True)
class Topology:
    """Everything ``topology.yaml`` declares. Ingress and dead-letter entities are implied."""

    ingress: IngressSpec = IngressSpec()
    dead_letter: DeadLetterSpec = DeadLetterSpec()
    control: ControlSpec = ControlSpec()
    exchanges: tuple[Exchange, ...] = ()
    queues: tuple[Queue, ...] = ()
    bindings: tuple[Binding, ...] = ()
    routes: tuple[RouteSpec, ...] = field(default=())
    cloudevents: CloudEventsSpec = field(default_factory=CloudEventsSpec)

    def all_exchanges(self) -> tuple[Exchange, ...]:
        """Declared exchanges plus the ingress (topic) and dead-letter (topic) exchanges."""
        return (
            Exchange(self.ingress.exchange, "topic"),
            Exchange(self.dead_letter.exchange, "topic"),
            *self.exchanges,
        )

    def all_queues(self) -> tuple[Queue, ...]:
        """Declared queues plus the ingress quorum queue and the dead-letter queue."""
        ingress = Queue(
            self.ingress.queue,
            "quorum",
            arguments=(
                ("x-dead-letter-exchange", self.dead_letter.exchange),
                # Quorum queues dead-letter at-least-once only with reject-publish
                # overflow (RabbitMQ docs, "Quorum Queues: Dead Lettering").
                ("x-dead-letter-strategy", "at-least-once"),
                ("x-overflow", "reject-publish"),
                # Explicit: RabbitMQ 4.0 changed the default to 20 (STYLE.md).
                ("x-delivery-limit", self.ingress.delivery_limit),
                *_replicas(self.ingress.replicas),
            ),
        )
        # Browsing the DLQ (``dlq list``) returns messages to it, which quorum queues
        # count as deliveries; from RabbitMQ 4.0 the default limit of 20 would then
        # drop dead letters.  An explicit, huge limit keeps them.
        dead = Queue(self.dead_letter.queue, "quorum",
                     arguments=(("x-delivery-limit", DLQ_DELIVERY_LIMIT),
                                *_replicas(self.dead_letter.replicas)))
        return (ingress, dead, *self.queues)

    def retry_queue(self, name: str, delay: float, target: str | None = None) -> Queue:
        """A TTL queue that dead-letters into ``target`` (default: the ingress queue) after
        ``delay`` seconds.  ``router.sdk`` uses it for a service's own queues."""
        return Queue(name, "quorum", arguments=(
            ("x-message-ttl", max(1, round(delay * 1000))),
            ("x-dead-letter-exchange", ""),  # the default exchange: straight to a queue
            ("x-dead-letter-routing-key", target or self.ingress.queue),
            ("x-dead-letter-strategy", "at-least-once"),
            ("x-overflow", "reject-publish"),
            *(_replicas(self.ingress.replicas) if target is None else ()),
        ))

    def all_bindings(self) -> tuple[Binding, ...]:
        """Declared bindings plus ingress ``#`` and dead-letter ``#`` bindings."""
        return (
            Binding(self.ingress.exchange, self.ingress.queue, "#"),
            Binding(self.dead_letter.exchange, self.dead_letter.queue, "#"),
            *self.bindings,
        )
