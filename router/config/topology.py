"""The broker entities and routes declared in ``topology.yaml``, as frozen values.

``parse_topology`` turns a parsed ``Document`` into a ``Topology`` and a list
of located problems; it never raises on bad input.  CEL expressions are
compiled by ``router.core.route``, which owns their meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from router.config.branches import CHOICE_KEYS, Branch, Choice, parse_choice, parse_shadows
from router.config.cloudevents import FORMATS, CloudEventsSpec, parse_cloudevents
from router.config.durations import parse_duration
from router.config.fields import Fields
from router.config.source import Document
from router.errors import Problem

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
    "parse_topology",
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


def _arguments(reader: Fields, key: str = "arguments") -> Arguments:
    value = reader.get(key, dict, {})
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        reader.fail((key,), f"argument names must be strings, got {bad[0]!r}")
        return ()
    return tuple(sorted(value.items()))


def _items(doc: Document, key: str, problems: list[Problem]) -> list[tuple[int, Any]]:
    value = doc.data.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(doc.problem((key,), f"{key!r} must be a list"))
        return []
    return list(enumerate(value))


def _parse_exchange(doc: Document, i: int, raw: Any, problems: list[Problem]) -> Exchange | None:
    f = Fields.of(doc, ("exchanges", i), raw, problems,
                  allowed={"name", "type", "durable", "auto_delete", "internal", "arguments"},
                  what="exchange")
    if not f.valid:
        return None
    name = f.name("name")
    if name.startswith("amq."):
        f.fail(("name",), f"exchange {name!r}: names starting with 'amq.' are reserved by RabbitMQ")
    exchange = Exchange(
        name=name,
        type=f.choice("type", EXCHANGE_TYPES, "topic"),
        durable=f.get("durable", bool, True),
        auto_delete=f.get("auto_delete", bool, False),
        internal=f.get("internal", bool, False),
        arguments=_arguments(f),
    )
    return exchange if f.valid else None


def _parse_queue(doc: Document, i: int, raw: Any, problems: list[Problem]) -> Queue | None:
    f = Fields.of(doc, ("queues", i), raw, problems,
                  allowed={"name", "type", "durable", "auto_delete", "max_priority", "arguments",
                           "replicas"}, what="queue")
    if not f.valid:
        return None
    qtype = f.choice("type", QUEUE_TYPES, "quorum")
    priority = f.get("max_priority", int, 0) if "max_priority" in f.data else None
    if priority is not None and not 1 <= priority <= 255:
        f.fail(("max_priority",), "max_priority must be between 1 and 255")
    if priority is not None and qtype != "classic":
        f.fail(("max_priority",), f"max_priority needs a classic queue; {qtype} queues "
                                  "do not support priorities on RabbitMQ 3.x")
    durable = f.get("durable", bool, True)
    if qtype != "classic" and not durable:
        f.fail(("durable",), f"{qtype} queues are always durable")
    arguments = _arguments(f)
    if "x-queue-type" in dict(arguments):
        f.fail(("arguments",), "set the queue type with 'type', not the x-queue-type argument")
    if "replicas" in f.data:
        arguments = (*arguments, *_queue_replicas(f, qtype, arguments))
    queue = Queue(
        name=f.name("name"),
        type=qtype,
        durable=durable,
        auto_delete=f.get("auto_delete", bool, False),
        max_priority=priority,
        arguments=arguments,
    )
    return queue if f.valid else None


_REPLICA_ARGUMENT = {"quorum": "x-quorum-initial-group-size", "stream": "x-initial-cluster-size"}


def _queue_replicas(f: Fields, qtype: str, arguments: Arguments) -> Arguments:
    """``replicas: N``: on how many cluster nodes a quorum queue or stream is created."""
    count = f.get("replicas", int, 1)
    argument = _REPLICA_ARGUMENT.get(qtype)
    if argument is None:
        f.fail(("replicas",), "replicas needs a quorum queue or a stream; classic queues "
                              "are not replicated")
        return ()
    if count < 1:
        f.fail(("replicas",), "replicas must be at least 1")
    if argument in dict(arguments):
        f.fail(("replicas",), f"replicas and the {argument} argument say the same: keep one")
    return ((argument, count),)


def _parse_binding(doc: Document, i: int, raw: Any, problems: list[Problem]) -> Binding | None:
    f = Fields.of(doc, ("bindings", i), raw, problems,
                  allowed={"exchange", "queue", "routing_key", "arguments"}, what="binding")
    if not f.valid:
        return None
    binding = Binding(
        exchange=f.name("exchange"),
        queue=f.name("queue"),
        routing_key=f.get("routing_key", str, ""),
        arguments=_arguments(f),
    )
    return binding if f.valid else None


def _parse_route(doc: Document, i: int, raw: Any, problems: list[Problem]) -> RouteSpec | None:
    f = Fields.of(doc, ("routes", i), raw, problems,
                  allowed={"name", "message_type", "when", "to", "version", "format", *CHOICE_KEYS},
                  what="route")
    if not f.valid:
        return None
    destinations: list[Destination] = []
    choice = parse_choice(f, parse_duration)
    to = f.get("to", list, [], required="alternatives" not in f.data)
    if "to" in f.data and not to:
        f.fail(("to",), "a route needs at least one destination in 'to'")
    for j, raw_dest in enumerate(to):
        d = Fields.of(doc, ("routes", i, "to", j), raw_dest, problems,
                      allowed={"exchange", "routing_key"}, what="destination")
        if d.valid:
            key = d.get("routing_key", str, "") if "routing_key" in d.data else None
            destinations.append(Destination(d.name("exchange"), key))
        f.valid &= d.valid
    when = f.get("when", str, "") or None
    version = f.get("version", int, 1) if "version" in f.data else None
    if version is not None and version < 1:
        f.fail(("version",), f"'version' must be a schema version (1 or more), got {version}")
    route = RouteSpec(
        name=f.name("name"),
        message_type=f.name("message_type"),
        to=tuple(destinations),
        when=when,
        line=f.line(("when",)) if when else f.line(),
        version=version,
        choice=choice,
        shadows=parse_shadows(f),
        format=f.choice("format", FORMATS, "as-is"),
    )
    return route if f.valid else None


def _parse_section(doc: Document, key: str, cls: type[Any], problems: list[Problem]) -> Any:
    raw = doc.data.get(key, {})
    fields = {"ingress": {"exchange", "queue", "delivery_limit", "replicas"},
              "dead_letter": {"exchange", "queue", "replicas"}, "control": {"exchange"}}[key]
    f = Fields.of(doc, (key,), raw or {}, problems, allowed=fields, what=key)
    if not f.valid:
        return cls()
    values: dict[str, Any] = {}
    for name in ("exchange", "queue"):
        if name in f.data:
            values[name] = f.name(name)
    if "delivery_limit" in f.data:
        limit = f.get("delivery_limit", int, DEFAULT_DELIVERY_LIMIT)
        if limit < 1:
            f.fail(("delivery_limit",), "delivery_limit must be at least 1")
        values["delivery_limit"] = limit
    if "replicas" in f.data:
        values["replicas"] = f.get("replicas", int, 1)
        if values["replicas"] < 1:
            f.fail(("replicas",), "replicas must be at least 1")
    return cls(**values)


Indexed = list[tuple[int, Any]]  # (index in the file's list, parsed entry)


def _check_references(doc: Document, topo: Topology, parsed: dict[str, Indexed],
                      problems: list[Problem], broken: dict[str, set[str]]) -> None:
    """Duplicates and references to what is not declared.  A reference to an entity that
    is written but wrong (``broken``) is not reported again: its own problem is the cause."""
    exchanges = {e.name for e in topo.all_exchanges()} | broken["exchanges"]
    queues = {q.name for q in topo.all_queues()} | broken["queues"]
    implied = {"exchanges": [e.name for e in topo.all_exchanges()[:2]],
               "queues": [q.name for q in topo.all_queues()[:2]]}
    for kind, key in (("exchange", "exchanges"), ("queue", "queues")):
        seen = set(implied[key])
        for i, entity in parsed[key]:
            if entity.name in seen:
                problems.append(doc.problem((key, i, "name"),
                                            f"{kind} {entity.name!r} is declared twice"))
            seen.add(entity.name)
    for i, b in parsed["bindings"]:
        if b.exchange not in exchanges:
            problems.append(doc.problem(("bindings", i, "exchange"),
                                        f"binding to undeclared exchange {b.exchange!r}"))
        if b.queue not in queues:
            problems.append(doc.problem(("bindings", i, "queue"),
                                        f"binding to undeclared queue {b.queue!r}"))
    route_names: set[str] = set()
    for i, r in parsed["routes"]:
        if r.name in route_names:
            problems.append(doc.problem(("routes", i, "name"),
                                        f"route name {r.name!r} is used twice"))
        route_names.add(r.name)
        for where, d in _route_destinations(r, i):
            if d.exchange == topo.ingress.exchange:
                problems.append(doc.problem(where, f"route {r.name!r} sends to the ingress "
                                                   "exchange, which would loop"))
            elif d.exchange not in exchanges:
                problems.append(doc.problem(where, f"route {r.name!r} sends to undeclared "
                                                   f"exchange {d.exchange!r}"))


def _route_destinations(r: RouteSpec, i: int) -> list[tuple[tuple[str | int, ...], Any]]:
    """Every destination a route names (to, alternatives, shadows), with its path."""
    found: list[tuple[tuple[str | int, ...], Any]] = [
        (("routes", i, "to", j, "exchange"), d) for j, d in enumerate(r.to)]
    for key, branches in (("alternatives", r.choice.branches if r.choice else ()),
                          ("shadow", r.shadows)):
        found += [(("routes", i, key, j, "exchange"), b) for j, b in enumerate(branches)]
    return found


def parse_topology(doc: Document) -> tuple[Topology, list[Problem]]:
    """Read a topology document; problems are collected, never raised."""
    problems: list[Problem] = []
    if doc.data is None:
        doc = Document(doc.file, {}, doc.lines)
    top = Fields.of(doc, (), doc.data, problems,
                    allowed={"ingress", "dead_letter", "control", "exchanges", "queues",
                             "bindings", "routes", "cloudevents"},
                    what="topology")
    if not top.valid:
        return Topology(), problems

    parsers = {"exchanges": _parse_exchange, "queues": _parse_queue,
               "bindings": _parse_binding, "routes": _parse_route}
    parsed: dict[str, Indexed] = {}
    broken: dict[str, set[str]] = {key: set() for key in parsers}  # names written, refused
    for key, parse in parsers.items():
        parsed[key] = []
        for i, raw in _items(doc, key, problems):
            item = parse(doc, i, raw, problems)
            if item is not None:
                parsed[key].append((i, item))
            elif isinstance(raw, dict) and isinstance(raw.get("name"), str):
                broken[key].add(raw["name"])

    def items(key: str) -> tuple[Any, ...]:
        return tuple(item for _, item in parsed[key])

    topo = Topology(
        ingress=_parse_section(doc, "ingress", IngressSpec, problems),
        dead_letter=_parse_section(doc, "dead_letter", DeadLetterSpec, problems),
        control=_parse_section(doc, "control", ControlSpec, problems),
        exchanges=items("exchanges"),
        queues=items("queues"),
        bindings=items("bindings"),
        routes=items("routes"),
        cloudevents=parse_cloudevents(doc, doc.data.get("cloudevents"), problems),
    )
    _check_references(doc, topo, parsed, problems, broken)
    return topo, problems
