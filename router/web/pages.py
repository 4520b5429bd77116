"""The console's pages (GET): the live flow, dead letters, one letter, a message, the audit log.

Every page is complete HTML without JavaScript; htmx only refreshes the live
parts (the flow panel, a job's progress) in place.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from router.config.reach import queues_reached
from router.config.topology import Topology
from router.core.breakers import QueueStatus
from router.core.envelope import Properties
from router.errors import BrokerUnavailable
from router.observe.tracing import trace_id_of
from router.tools.letters import Letter, group
from router.tools.lettertext import MAX_BODY_REPR, plain
from router.web.flow import chart
from router.web.graph import route_graph
from router.web.highlight import marked_json
from router.web.providers import Console, Ops
from router.web.render import page
from router.web.selection import Selection, filter_of, key_of_group, letter_key
from router.web.strategies import strategy_rows

__all__ = ["LIST_LIMIT", "Keyed", "letter_facts", "message_page", "page_routes"]

LIST_LIMIT = 200  # letters listed on one page

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclasses.dataclass(frozen=True)
class Keyed:
    key: str
    letter: Letter


def _reached(t: Topology, exchange: str, key: str | None, message_type: str) -> tuple[str, ...]:
    if key is None and any(c in message_type for c in "*?["):  # any key: every bound queue
        return tuple(b.queue for b in t.all_bindings() if b.exchange == exchange)
    return queues_reached(t, exchange, key or message_type)


def route_rows(t: Topology, circuits: Mapping[str, Mapping[str, object]]) -> list[dict[str, Any]]:
    """One row per destination of every route."""
    rows = []
    for r in t.routes:
        for i, d in enumerate(r.to):
            key = d.routing_key or r.message_type
            rows.append({"first": i == 0, "route": r.name, "message_type": r.message_type,
                         "when": r.when, "exchange": d.exchange or "(default)",
                         "routing_key": key,
                         "breaker": circuits.get(f"{d.exchange or '(default)'}/{key}"),
                         "queues": _reached(t, d.exchange, d.routing_key, r.message_type)})
    return rows


async def flow_context(console: Console) -> dict[str, Any]:
    t = console.config().topology
    names = [q.name for q in t.all_queues()]
    problem = None
    try:
        depths: Mapping[str, QueueStatus | None] = await console.broker.depths(names)
    except BrokerUnavailable as exc:
        depths, problem = {}, str(exc)
    latest = console.rates.latest()

    def rate(name: str) -> str:
        return "-" if latest is None else f"{getattr(latest, name):,.1f}"

    def depth(q: str) -> str:
        s = depths.get(q)
        return "-" if s is None else f"{s.messages:,}"

    def consumers(q: str) -> str:
        s = depths.get(q)
        return "-" if s is None else str(s.consumers)

    circuits = console.circuits() if console.circuits else {}
    listing = console.services() if console.services else {}
    services = listing.get("services", [])
    return {"rate": rate, "depth": depth, "consumers": consumers, "problem": problem,
            "has_rates": console.totals is not None, "chart": chart(list(console.rates.samples)),
            "routes": route_rows(t, circuits), "ingress_queue": t.ingress.queue,
            "dead_queue": t.dead_letter.queue, "depths": {k: v for k, v in depths.items() if v},
            "services": services if isinstance(services, list) else [],
            "strategies": strategy_rows(t, console.branches() if console.branches else None,
                                        console.shadows() if console.shadows else None),
            "live_branches": console.branches is not None}


def letter_facts(letter: Letter) -> dict[str, Any]:
    props = letter.envelope.properties
    properties = [(f.name, "-" if getattr(props, f.name) is None else
                   _shown(getattr(props, f.name)))
                  for f in dataclasses.fields(Properties) if f.name != "headers"]
    headers = [(str(k), _shown(v)) for k, v in sorted(props.headers.items())]
    pieces = marked_json(letter.envelope.body, letter.error)
    raw = letter.envelope.body[:MAX_BODY_REPR]
    try:
        edit_body = json.dumps(json.loads(letter.envelope.body), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        edit_body = letter.envelope.body.decode("utf-8", "replace")
    deaths = props.headers.get("x-death")
    history = [{k: _shown(d.get(k, "")) for k in ("queue", "reason", "count", "time",
                                                  "exchange", "routing-keys")}
               for d in (deaths if isinstance(deaths, list | tuple) else ())
               if isinstance(d, Mapping)]
    return {"letter": letter, "properties": properties, "headers": headers, "pieces": pieces,
            "deaths": history,
            "marked": bool(pieces and any(m for _, m in pieces)),
            "raw_body": repr(raw) + (" …" if len(letter.envelope.body) > len(raw) else ""),
            "trace_id": trace_id_of(letter.headers), "edit_body": edit_body}


def _shown(value: Any) -> str:
    shown = plain(value)
    return shown if isinstance(shown, str) else json.dumps(shown, ensure_ascii=False,
                                                           default=str)


def _letters(console: Console) -> Endpoint:
    """The dead letters a filter (and a group) picks, newest first, with the groups."""

    async def letters(request: Request) -> Response:
        try:
            flt, given = filter_of(request.query_params, console.clock())
        except ValueError as exc:
            return page(request, console, "letters.html", status=400, title="Dead letters",
                        page="letters", problem=str(exc), given={}, group=None, groups=[],
                        keys=[], letters=[], shown=0, total=0, queue="", capped=False)
        group_id = request.query_params.get("group") or None
        browse = await console.broker.browse()
        matching = Selection(flt).among(browse.letters)
        groups = group(matching, by_type=True)
        chosen = Selection(flt, group=group_id).among(matching)
        newest = sorted(chosen, key=lambda x: x.dead_lettered_at is None)[::-1]
        return page(request, console, "letters.html", title="Dead letters", page="letters",
                    given=given, group=group_id, groups=groups,
                    keys=[key_of_group(g) for g in groups],
                    letters=[Keyed(letter_key(x), x) for x in newest[:LIST_LIMIT]],
                    more=len(chosen) > LIST_LIMIT, shown=len(chosen), total=browse.total,
                    letters_seen=len(browse.letters), capped=browse.total > len(browse.letters),
                    stale=browse.stale,
                    queue=console.config().topology.dead_letter.queue)

    return letters


def page_routes(console: Console) -> list[BaseRoute]:
    """The console's GET routes."""

    async def flow(request: Request) -> Response:
        ctx = await flow_context(console)
        return page(request, console, "flow.html", title="Live flow", page="flow",
                    graph=route_graph(console.config().topology), **ctx)

    async def panel(request: Request) -> Response:
        return page(request, console, "_panel.html", **await flow_context(console))

    async def letter(request: Request) -> Response:
        key = request.path_params["key"]
        browse = await console.broker.browse()
        found = next((x for x in browse.letters if letter_key(x) == key), None)
        if found is None:
            return page(request, console, "refused.html", status=404, title="Not found",
                        heading="No such dead letter",
                        why="It is no longer in the dead-letter queue (replayed or purged?).")
        return page(request, console, "letter.html", title="Dead letter", page="letters",
                    key=key, jaeger=console.jaeger_url, check=None, **letter_facts(found))

    async def audit(request: Request) -> Response:
        entries = await asyncio.to_thread(console.audit.recent)
        return page(request, console, "audit.html", title="Audit log", page="audit",
                    entries=entries, path=str(console.audit.path))

    async def login(request: Request) -> Response:
        return page(request, console, "login.html", title="Sign in",
                    next=request.query_params.get("next", "/"))

    return [Route("/", flow), Route("/flow/panel", panel),
            Route("/dead-letters", _letters(console)),
            Route("/dead-letters/{key:str}", letter), Route("/audit", audit),
            Route("/login", login)]


def message_page(console: Console, ops: Ops) -> Endpoint:
    """``/messages/<id>`` for a browser: the journal's entry and the message's dead letters."""

    async def message(request: Request) -> Response:
        message_id = request.path_params["message_id"]
        journey = ops.messages(message_id) if ops.messages is not None else None
        note = "This process keeps no journal." if ops.messages is None else \
            "The router's journal does not remember this message (never seen, or too old)."
        try:
            browse = await console.broker.browse()
            found = [Keyed(letter_key(x), x) for x in browse.letters
                     if x.message_id == message_id]
            letters_note = "None."
        except BrokerUnavailable as exc:
            found, letters_note = [], str(exc)
        facts, timelines = _journey(journey or {})
        return page(request, console, "message.html", title="Message", page="",
                    message_id=message_id, journey=journey, journal_note=note, facts=facts,
                    timelines=timelines, letters=found, letters_note=letters_note,
                    jaeger=console.jaeger_url)

    return message


Timeline = tuple[str, list[dict[str, str]], list[str]]  # name, rows, columns


def _journey(journey: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[Timeline]]:
    """A journal entry as facts (scalars) and timelines (lists of objects), shown as text."""
    facts: list[tuple[str, str]] = []
    timelines: list[Timeline] = []
    for name, value in journey.items():
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            lead = [c for c in ("at", "event") if all(c in v for v in value)]
            rows = [{**{c: _shown(v[c]) for c in lead},
                     "detail": "; ".join(f"{k}: {_shown(x)}" for k, x in v.items()
                                         if k not in lead and x not in (None, "", [], {}))}
                    for v in value]
            timelines.append((str(name), rows, [*lead, "detail"]))
        else:
            facts.append((str(name), _shown(value)))
    return facts, timelines

