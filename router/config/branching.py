"""A route's alternatives compiled against the topology, and what ``check`` says about them.

``compile_alternatives`` resolves, for ``least_loaded``, which queues each
branch's copies land in (by the topology's bindings, streams left out: their
depth says nothing about a consumer's backlog) and the destination its
breaker guards.  ``check_branches`` reports, at the route's line, a
least_loaded branch whose queues cannot be known or that reaches none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from router.config.branches import Branch, Strategy
from router.config.topology import RouteSpec, Topology, is_glob
from router.core.choose import NO_VIEW, Alternatives, LoadView, Picked, digest, pick, sampled
from router.core.outcome import Copy
from router.core.reach import queues_reached
from router.errors import Problem

__all__ = ["Draw", "branch_copies", "check_branches", "compile_alternatives", "describe",
           "key_bytes", "plan_lines", "route_targets", "versions", "watched_queues"]


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


def key_bytes(value: Any) -> bytes | None:
    """A key's value as bytes to hash: text as UTF-8, anything else as sorted JSON."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)
    except (orjson.JSONEncodeError, TypeError):
        return None


def versions(spec: RouteSpec) -> list[tuple[int | None, int | None]]:
    """Every schema version a route's copies may ask for, with the line that asks."""
    found = [(spec.version, spec.line)]
    branches = (*(spec.choice.branches if spec.choice else ()), *spec.shadows)
    found += [(b.version, b.line) for b in branches if b.version is not None]
    return found


def _copy(spec: RouteSpec, b: Branch, message_type: str, **more: Any) -> Copy:
    return Copy(spec.name, b.exchange, b.routing_key if b.routing_key is not None
                else message_type, b.version if b.version is not None else spec.version,
                branch=b.name, **more)


@dataclass(frozen=True, slots=True)
class Draw:
    """What one message brings to the choice of its branches.

    ``context`` is the CEL activation the key reads, ``message`` the hash of the
    message id, ``view`` what least_loaded knows, ``pin`` (exchange, routing key)
    the branch a retried copy took."""

    message_type: str
    context: Any = None
    message: int = 0
    view: LoadView = NO_VIEW
    pin: tuple[str, str] | None = None


def _pick(alternatives: Alternatives, key: Any, draw: Draw) -> Picked:
    if draw.pin is not None:
        for b in alternatives.branches:
            if (b.exchange, b.routing_key if b.routing_key is not None
                    else draw.message_type) == draw.pin:
                return Picked(b)
    hashed: int | None = None
    if key is not None:
        try:
            raw = key_bytes(key.execute(draw.context))
        except Exception:  # noqa: BLE001 -- CEL: a key that errors is no key (router.core.choose)
            raw = None
        hashed = digest(raw) if raw is not None else None
    return pick(alternatives, hashed, draw.message, draw.view,
                keyless=key is not None and hashed is None)


def branch_copies(spec: RouteSpec, alternatives: Alternatives | None, key: Any,
                  draw: Draw) -> list[Copy]:
    """The copy for the alternative picked and one per shadow in its sample
    (``key``: the compiled CEL key, or None)."""
    copies: list[Copy] = []
    if alternatives is not None:
        picked = _pick(alternatives, key, draw)
        copies.append(_copy(spec, picked.branch, draw.message_type, skipped=picked.skipped,
                            keyless=picked.keyless))
    copies += [_copy(spec, s, draw.message_type, shadow=True) for s in spec.shadows
               if sampled(s.share, draw.message, s.name)]
    return copies


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
