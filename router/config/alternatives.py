"""A route's alternatives compiled against the topology, and what ``check`` says about them.

Which branch a copy takes, at run time, is ``router.core.choose``.

``compile_alternatives`` resolves, for ``least_loaded``, which queues each
branch's copies land in (by the topology's bindings, streams left out: their
depth says nothing about a consumer's backlog) and the destination its
breaker guards.  ``check_branches`` reports, at the route's line, a
least_loaded branch whose queues cannot be known or that reaches none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.config.branches import Branch, Strategy
from router.config.reach import queues_reached
from router.config.topology import RouteSpec, Topology, is_glob
from router.errors import Problem

__all__ = ["Alternatives", "check_branches", "compile_alternatives", "describe", "plan_lines",
           "route_targets", "versions", "watched_queues"]


@dataclass(frozen=True, slots=True)
class Alternatives:
    """A route's choice, compiled: branches, shares, and for least_loaded the queues."""

    strategy: Strategy
    branches: tuple[Branch, ...]
    shares: tuple[float, ...]
    targets: tuple[tuple[str, str], ...] = ()  # (exchange, routing key) when known
    queues: tuple[tuple[str, ...], ...] = ()  # per branch, the queues least_loaded reads


def _queues(topology: Topology | None, exchange: str, routing_key: str) -> tuple[str, ...]:
    if topology is None:
        return ()
    streams = {q.name for q in topology.all_queues() if q.type == "stream"}
    return tuple(q for q in queues_reached(topology, exchange, routing_key) if q not in streams)


def compile_alternatives(spec: RouteSpec, topology: Topology | None) -> Alternatives | None:
    """The route's choice ready for ``router.core.choose.pick`` (None: it has no alternatives)."""
    choice = spec.choice
    if choice is None:
        return None
    targets: tuple[tuple[str, str], ...] = ()
    queues: tuple[tuple[str, ...], ...] = ()
    if choice.strategy is Strategy.LEAST_LOADED and (
            not is_glob(spec.message_type)
            or all(b.routing_key is not None for b in choice.branches)):
        targets = tuple((b.exchange, b.routing_key if b.routing_key is not None
                         else spec.message_type) for b in choice.branches)
        queues = tuple(_queues(topology, exchange, key) for exchange, key in targets)
    return Alternatives(choice.strategy, choice.branches, choice.shares(), targets, queues)


def watched_queues(topology: Topology) -> dict[str, float]:
    """Queue -> how often least_loaded routes want it looked at (the shortest interval)."""
    watched: dict[str, float] = {}
    for route in topology.routes:
        compiled = compile_alternatives(route, topology)
        if route.choice is None or compiled is None:
            continue
        every = route.choice.check_every
        for queues in compiled.queues:  # empty unless least_loaded
            for queue in queues:
                watched[queue] = min(watched.get(queue, every), every)
    return watched


def check_branches(topology: Topology, file: str) -> list[Problem]:
    """least_loaded needs to know each branch's queues; shadows must not repeat a real copy."""
    problems: list[Problem] = []
    for route in topology.routes:
        choice = route.choice
        real = {(d.exchange, d.routing_key) for d in route.destinations()}
        for shadow in route.shadows:
            if (shadow.exchange, shadow.routing_key) in real:
                problems.append(Problem(file, f"route {route.name!r}: shadow {shadow.name!r} "
                                              "is also a real destination of the route",
                                        shadow.line))
        if choice is None or choice.strategy is not Strategy.LEAST_LOADED:
            continue
        if is_glob(route.message_type) and any(b.routing_key is None for b in choice.branches):
            problems.append(Problem(file, f"route {route.name!r}: least_loaded needs a "
                                          "routing_key on every alternative (or an exact "
                                          "message_type) to know which queues to watch",
                                    route.line))
            continue
        compiled = compile_alternatives(route, topology)
        found = compiled.queues if compiled is not None else ()
        for branch, queues in zip(choice.branches, found, strict=True):
            if not queues:
                problems.append(Problem(file, f"route {route.name!r}: alternative "
                                              f"{branch.name!r} reaches no queue (streams "
                                              "are not counted), so least_loaded cannot "
                                              "weigh it", branch.line))
    return problems


def versions(spec: RouteSpec) -> list[tuple[int | None, int | None]]:
    """Every schema version a route's copies may ask for, with the line that asks."""
    found = [(spec.version, spec.line)]
    branches = (*(spec.choice.branches if spec.choice else ()), *spec.shadows)
    found += [(b.version, b.line) for b in branches if b.version is not None]
    return found


Target = tuple[str, str | None, int | None, dict[str, Any] | None]


def route_targets(spec: RouteSpec) -> list[Target]:
    """Every place a route publishes: (exchange, routing key, version, branch), where
    ``branch`` describes an alternative or a shadow (None for a ``to`` destination)."""
    found: list[Target] = [(d.exchange, d.routing_key, spec.version, None) for d in spec.to]
    choice = spec.choice
    if choice is not None:
        for b, share in zip(choice.branches, choice.shares(), strict=True):
            about: dict[str, Any] = {"route": spec.name, "branch": b.name, "role": "alternative",
                                     "strategy": choice.strategy.value}
            if choice.strategy is Strategy.WEIGHTED:
                about["share"] = round(share, 3)
            if choice.key is not None:
                about["key"] = choice.key
            found.append((b.exchange, b.routing_key, _version(b, spec), about))
    for b in spec.shadows:
        shadow = {"route": spec.name, "branch": b.name, "role": "shadow",
                  "share": b.share if b.share is not None else 100.0}
        found.append((b.exchange, b.routing_key, _version(b, spec), shadow))
    return found


def _version(branch: Branch, spec: RouteSpec) -> int | None:
    return branch.version if branch.version is not None else spec.version


def describe(about: dict[str, Any]) -> str:
    """One branch in words, for the AsyncAPI document and ``plan``."""
    name, route = about["branch"], about["route"]
    if about["role"] == "shadow":
        return f"Shadow `{name}` of `{route}` ({about['share']:g} % of its messages)."
    how = about["strategy"] + (f" by `{about['key']}`" if "key" in about else "")
    share = f", {about['share']:g} % share" if "share" in about else ""
    return f"Alternative `{name}` of `{route}` ({how}{share})."


def plan_lines(topology: Topology) -> list[str]:
    """The routes that choose or shadow, their branches and shares, as ``plan`` prints them."""
    lines: list[str] = []
    for route in topology.routes:
        if route.choice is None and not route.shadows:
            continue
        choice = route.choice
        how = "" if choice is None else (
            f": one of {len(choice.branches)} alternatives, {choice.strategy.value}"
            + (f" by {choice.key}" if choice.key else "")
            + (f", queues looked at every {choice.check_every:g}s"
               if choice.strategy is Strategy.LEAST_LOADED else ""))
        lines.append(f"route {route.name}{how}")
        for exchange, routing_key, version, about in route_targets(route):
            if about is None:
                continue
            where = f"{exchange}/{routing_key if routing_key is not None else '*'}"
            named = "" if about["branch"] == where else f" {about['branch']}:"
            share = f" {about['share']:g} %" if "share" in about else ""
            of = " of messages" if about["role"] == "shadow" else ""
            at = f" as v{version}" if version is not None else ""
            lines.append(f"  {about['role']}{named} {where}{share}{of}{at}")
    return lines
