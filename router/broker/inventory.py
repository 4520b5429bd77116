"""What the broker holds, read through the RabbitMQ management HTTP API, compared with a file.

The management API (``rabbitmq_management`` plugin) lists exchanges, queues
*and bindings* with their settings, so a plan made from it sees what passive
declarations cannot: missing bindings, and every argument that differs (not
only the ones RabbitMQ's equivalence check looks at).  ``compare`` is pure;
``fetch_inventory`` does the HTTP (stdlib ``urllib``, in a thread).
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from router.config.configuration import Config
from router.config.topology import Binding

__all__ = ["Inventory", "Plan", "compare", "fetch_inventory", "management_url_for"]

TIMEOUT = 5.0  # seconds per request
_EXCHANGE_FIELDS = ("type", "durable", "auto_delete", "internal")
_QUEUE_FIELDS = ("durable", "auto_delete")


@dataclass
class Plan:
    """What ``apply`` would create, what is already there, what differs."""

    create: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Inventory:
    """The management API's view of one virtual host."""

    exchanges: Mapping[str, Mapping[str, Any]]
    queues: Mapping[str, Mapping[str, Any]]
    bindings: frozenset[tuple[str, str, str, str]]  # source, queue, key, arguments (JSON)


def _arguments_key(arguments: Mapping[str, Any]) -> str:
    return json.dumps(dict(arguments), sort_keys=True)


def _differences(what: str, live: Mapping[str, Any], wanted: Mapping[str, Any],
                 live_args: Mapping[str, Any], wanted_args: Mapping[str, Any]) -> list[str]:
    found = [f"{what}: {key} is {live.get(key)!r} on the broker, the file says {value!r}"
             for key, value in wanted.items() if live.get(key) != value]
    for key in sorted(set(live_args) | set(wanted_args)):
        if live_args.get(key) != wanted_args.get(key):
            have = "absent" if key not in live_args else repr(live_args[key])
            want = "absent" if key not in wanted_args else repr(wanted_args[key])
            found.append(f"{what}: argument {key} is {have} on the broker, the file says {want}")
    return found


def compare(config: Config, inventory: Inventory) -> Plan:
    """Compare ``config`` with what the broker holds; pure."""
    plan = Plan()
    for ex in config.topology.all_exchanges():
        what = f"exchange {ex.name} ({ex.type})"
        live = inventory.exchanges.get(ex.name)
        if live is None:
            plan.create.append(what)
            continue
        wanted = dict(zip(_EXCHANGE_FIELDS, (ex.type, ex.durable, ex.auto_delete, ex.internal),
                          strict=True))
        found = _differences(what, live, wanted, live.get("arguments") or {}, dict(ex.arguments))
        _record(plan, what, found)
    for q in config.broker_queues():
        what = f"queue {q.name} ({q.type})"
        live = inventory.queues.get(q.name)
        if live is None:
            plan.create.append(what)
            continue
        wanted_args = q.broker_arguments()
        live_args = dict(live.get("arguments") or {})
        # A classic queue declared without x-queue-type reports none: its type says it.
        live_args.setdefault("x-queue-type", live.get("type", "classic"))
        found = _differences(what, live, dict(zip(_QUEUE_FIELDS, (q.durable, q.auto_delete),
                                                  strict=True)), live_args, wanted_args)
        _record(plan, what, found)
    for b in config.topology.all_bindings():
        what = _binding(b)
        key = (b.exchange, b.queue, b.routing_key, _arguments_key(dict(b.arguments)))
        (plan.unchanged if key in inventory.bindings else plan.create).append(what)
    return plan


def _record(plan: Plan, what: str, differences: list[str]) -> None:
    if differences:
        plan.conflicts.extend(differences)
    else:
        plan.unchanged.append(what)


def _binding(b: Binding) -> str:
    return f"binding {b.exchange} -> {b.queue} [{b.routing_key}]"


def management_url_for(amqp_url: str) -> str:
    """The management API a local broker would have: same host, port 15672, same user."""
    parts = urllib.parse.urlsplit(amqp_url)
    user = urllib.parse.unquote(parts.username or "guest")
    password = urllib.parse.unquote(parts.password or "guest")
    host = parts.hostname or "localhost"
    credentials = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
    return f"http://{credentials}@{host}:15672/"


def _vhost(amqp_url: str) -> str:
    path = urllib.parse.urlsplit(amqp_url).path
    return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"


def _get(base: str, path: str) -> Any:
    parts = urllib.parse.urlsplit(base)
    netloc = parts.hostname or "localhost"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + path, "", ""))
    request = urllib.request.Request(url)  # noqa: S310 -- http(s) URL given by the operator
    user = urllib.parse.unquote(parts.username or "guest")
    password = urllib.parse.unquote(parts.password or "guest")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - as above
        return json.loads(response.read())


def _fetch(base: str, vhost: str) -> Inventory:
    v = urllib.parse.quote(vhost, safe="")
    exchanges = _get(base, f"/api/exchanges/{v}?columns=name,type,durable,auto_delete,internal,"
                           "arguments")
    queues = _get(base, f"/api/queues/{v}?columns=name,type,durable,auto_delete,arguments")
    bindings = _get(base, f"/api/bindings/{v}")
    return Inventory(
        {e["name"]: e for e in exchanges},
        {q["name"]: q for q in queues},
        frozenset((b["source"], b["destination"], b["routing_key"],
                   _arguments_key(b.get("arguments") or {}))
                  for b in bindings if b.get("destination_type") == "queue"))


async def fetch_inventory(management_url: str, amqp_url: str) -> Inventory:
    """Read the AMQP URL's virtual host through the management API.

    Raises ``OSError`` (connection refused, timeout, HTTP error) when the API
    cannot be used; the caller falls back to passive declarations.
    """
    try:
        return await asyncio.to_thread(_fetch, management_url, _vhost(amqp_url))
    except (urllib.error.URLError, ValueError, KeyError, TypeError) as exc:
        raise OSError(str(exc)) from exc
