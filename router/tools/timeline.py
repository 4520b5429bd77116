"""A message's journal record and its dead letters as a readable timeline (pure).

``mcp-router follow`` prints these lines.  Every value may come from a
publisher, so each is made safe for a terminal (``router.tools.lettertext.clean``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from router.core.counts import plural
from router.observe.tracing import trace_id_of
from router.tools.letters import Letter
from router.tools.lettertext import clean, when

__all__ = ["dead_letter_lines", "timeline"]


def _arrived(e: Mapping[str, Any], first: bool) -> str:
    where = f"from exchange {e.get('exchange')!r} (routing key {e.get('routing_key')!r}"
    if e.get("version") is not None:
        where += f", v{e['version']}"
    if e.get("publisher"):
        where += f", publisher {e['publisher']!r}"
    where += ")"
    if e.get("retry_round") is not None:
        route = f" of route {e['route']!r}" if e.get("route") else ""
        return f"back from the retry tier: round {e['retry_round']}{route}"
    if e.get("replay"):
        return f"arrived again: replay {e['replay']} (mcp-router dlq replay) {where}"
    if e.get("redelivered"):
        return f"redelivered by the broker {where}"
    return f"arrived {where}" if first else f"arrived again {where}"


def _routed(e: Mapping[str, Any]) -> str:
    copies = e.get("copies")
    count = copies if isinstance(copies, int) else len(copies or [])
    text = f"routed to {', '.join(e.get('routes') or [])} ({plural(count, 'copy', 'copies')}"
    policies = {k: v for k, v in (e.get("policies") or {}).items() if v is not None}
    if policies:
        text += "; " + ", ".join(f"{k} {v}" for k, v in policies.items())
    return text + ")"


def _copy(e: Mapping[str, Any]) -> str:
    where = f"copy for {e.get('route')!r} to {e.get('exchange') or '(default)'}/" \
            f"{e.get('routing_key')}"
    tries = plural(int(e.get("attempts") or 0), "attempt")
    if e.get("confirmed"):
        return f"{where}: confirmed by the broker ({tries})"
    return f"{where}: NOT confirmed ({tries}): {e.get('error')}"


def _seconds(e: Mapping[str, Any]) -> str:
    value = e.get("delay_seconds")
    return f"{value:g}s" if isinstance(value, int | float) else f"{value}s"


def _line(e: Mapping[str, Any], first: bool) -> str:
    match e.get("event"):
        case "arrived":
            return _arrived(e, first)
        case "routed":
            return _routed(e)
        case "refused":
            return f"refused: {e.get('reason')}: {e.get('error')}"
        case "shaped":
            return f"to be held back {_seconds(e)} by a rate limit: {e.get('why')}"
        case "parked":
            return f"parked on the broker for {_seconds(e)}"
        case "copy":
            return _copy(e)
        case "retry":
            return f"retry round {e.get('round')} for {e.get('route')!r} in {_seconds(e)} " \
                   "(parked on the broker)"
        case "held":
            return f"copy for {e.get('route')!r} waits {_seconds(e)}: {e.get('why')}"
        case "dead_lettered":
            route = f" (route {e['route']!r})" if e.get("route") else ""
            return f"dead-lettered as {e.get('reason')}{route} to {e.get('exchange')!r}: " \
                   f"{e.get('error')}"
        case "requeued":
            return "given back to the queue (the broker will deliver it again)"
        case other:
            return f"{other}: " + ", ".join(f"{k}={v}" for k, v in e.items()
                                            if k not in ("at", "event"))


def timeline(record: Mapping[str, Any]) -> list[str]:
    """The journal's record of one message (``Journal.get``) as lines, oldest first."""
    events: Sequence[Mapping[str, Any]] = record.get("events") or []
    head = f"message {record.get('message_id')}"
    if record.get("type"):
        head += f": {record['type']}"
    if record.get("trace_id"):
        head += f", trace {record['trace_id']}"
    if events:
        head += f", first seen {events[0].get('at')}"
    lines = [clean(head)]
    arrivals = 0
    for event in events:
        at = str(event.get("at", ""))
        lines.append(f"  {clean(at[11:23] or at)}  {clean(_line(event, arrivals == 0))}")
        arrivals += event.get("event") == "arrived"
    if record.get("truncated"):
        lines.append("  ...  (later events were not kept)")
    return lines


def dead_letter_lines(letters: Sequence[Letter]) -> list[str]:
    """What the dead-letter queue holds about one message id, one block per letter."""
    lines: list[str] = []
    for x in letters:
        route = f", route {x.route!r}" if x.route else ""
        where = f" (was going to {x.destination_exchange}/{x.destination_routing_key})" \
            if x.destination_exchange is not None else ""
        lines += [
            clean(f"message {x.message_id or '-'}: {x.message_type or 'unknown type'}, trace "
                  f"{trace_id_of(x.headers) or '-'}"),
            clean(f"  {when(x.dead_lettered_at)}  dead-lettered as {x.reason}{route}{where}: "
                  f"{x.error}"),
            clean(f"  attempts {'-' if x.attempts is None else x.attempts}, replayed "
                  f"{plural(x.replays, 'time')}; it waits in the dead-letter queue "
                  f"(mcp-router dlq show --id {x.message_id or '-'}; dlq replay --id ...)"),
        ]
    return lines
