"""``topology.yaml`` read into a ``Topology``: exchanges, queues, bindings, routes.

``parse_topology`` turns a parsed ``Document`` into a ``Topology`` and a list
of located problems; it never raises on bad input.
"""

from __future__ import annotations

from typing import Any

from router.config.branches import CHOICE_KEYS, parse_choice, parse_shadows
from router.config.cloudevents_spec import FORMATS, parse_cloudevents
from router.config.durations import parse_duration
from router.config.fields import Fields, Shape
from router.config.source import Document
from router.config.topology import (
    DEFAULT_DELIVERY_LIMIT,
    EXCHANGE_TYPES,
    QUEUE_TYPES,
    Arguments,
    Binding,
    ControlSpec,
    DeadLetterSpec,
    Destination,
    Exchange,
    IngressSpec,
    Queue,
    RouteSpec,
    Topology,
)
from router.errors import Problem

__all__ = ["parse_topology"]


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
    f = Fields.of(doc, ("exchanges", i), raw, problems, shape=Shape(
        {"name", "type", "durable", "auto_delete", "internal", "arguments"}, "exchange"))
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
                  shape=Shape({"name", "type", "durable", "auto_delete", "max_priority",
                               "arguments", "replicas"}, "queue"))
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
                  shape=Shape({"exchange", "queue", "routing_key", "arguments"}, "binding"))
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
                  shape=Shape({"name", "message_type", "when", "to", "version", "format",
                               *CHOICE_KEYS}, "route"))
    if not f.valid:
        return None
    destinations: list[Destination] = []
    choice = parse_choice(f, parse_duration)
    to = f.get("to", list, [], required="alternatives" not in f.data)
    if "to" in f.data and not to:
        f.fail(("to",), "a route needs at least one destination in 'to'")
    for j, raw_dest in enumerate(to):
        d = Fields.of(doc, ("routes", i, "to", j), raw_dest, problems,
                      shape=Shape({"exchange", "routing_key"}, "destination"))
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
    f = Fields.of(doc, (key,), raw or {}, problems, shape=Shape(fields, key))
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
                    shape=Shape({"ingress", "dead_letter", "control", "exchanges", "queues",
                             "bindings", "routes", "cloudevents"}, "topology"))
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
