"""Dead letters rendered for people and for scripts (pure).

Everything shown comes from messages anyone could publish, so text is made
safe for a terminal before it is printed: control characters, bidi overrides
and lone surrogates appear escaped (``\\x1b``), never raw (``clean``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, assert_never

import orjson

from router.core.envelope import Properties
from router.core.outcome import DeadCopy, DeadLetter, Delay, Forward, Outcome
from router.observe.tracing import trace_id_of
from router.tools.letters import Group, Letter

__all__ = [
    "MAX_BODY_REPR",
    "body_lines",
    "clean",
    "group_record",
    "group_table",
    "letter_record",
    "letter_table",
    "outcome_text",
    "plain",
    "progress_bar",
    "show_lines",
    "when",
]

MAX_BODY_REPR = 4096  # bytes of a non-JSON body shown by ``dlq show``
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")


def clean(text: str, limit: int | None = None) -> str:
    """``text`` safe for a terminal, on one line, cut to ``limit`` characters."""
    text = _UNSAFE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)
    if limit is not None and len(text) > limit:
        return text[:max(limit - 3, 0)] + "..."
    return text


def when(at: datetime | None) -> str:
    """``2026-11-24T12:00:00.000Z``, or ``-`` when unknown."""
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z") if at else "-"


def plain(value: Any) -> Any:
    """A header value as JSON can hold it (bytes as text when UTF-8, else their repr)."""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return repr(bytes(value))
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _table(header: Sequence[str], rows: Iterable[Sequence[str]],
           limits: Sequence[int]) -> list[str]:
    cells = [[clean(c, limit) for c, limit in zip(row, limits, strict=True)] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [list(header), *cells]]


def letter_table(letters: Sequence[Letter]) -> list[str]:
    """One line per dead letter: time, reason, type, message id, attempts, error (cut)."""
    rows = [(when(x.dead_lettered_at), x.reason, x.message_type or "-", x.message_id or "-",
             "-" if x.attempts is None else str(x.attempts), x.error) for x in letters]
    return _table(("TIME", "REASON", "TYPE", "MESSAGE ID", "ATTEMPTS", "ERROR"), rows,
                  (24, 24, 32, 40, 8, 72))


def group_table(groups: Sequence[Group]) -> list[str]:
    """One line per group: count, reason, fingerprint, last seen, normalised error."""
    rows = [(str(g.count), g.reason, g.fingerprint, when(g.last), g.error) for g in groups]
    return _table(("COUNT", "REASON", "FINGERPRINT", "LAST", "ERROR"), rows,
                  (10, 24, 10, 24, 100))


def letter_record(letter: Letter) -> dict[str, Any]:
    """A dead letter for ``--json`` (no body: ``dlq show`` has it)."""
    return {
        "message_id": letter.message_id, "type": letter.message_type,
        "reason": letter.reason, "error": letter.error,
        "dead_lettered_at": when(letter.dead_lettered_at) if letter.dead_lettered_at else None,
        "attempts": letter.attempts, "replays": letter.replays,
        "routing_key": letter.envelope.routing_key,
        "original_exchange": letter.original_exchange,
        "original_routing_key": letter.original_routing_key,
        "route": letter.route, "destination_exchange": letter.destination_exchange,
        "destination_routing_key": letter.destination_routing_key,
        "trace_id": trace_id_of(letter.headers), "size": len(letter.envelope.body),
    }


def group_record(g: Group) -> dict[str, Any]:
    """A group for ``--json``."""
    return {"reason": g.reason, "fingerprint": g.fingerprint, "error": g.error,
            "count": g.count, "first": when(g.first) if g.first else None,
            "last": when(g.last) if g.last else None, "types": list(g.types),
            "example_message_id": g.example}


def _value(value: Any) -> str:
    shown = plain(value)
    if isinstance(shown, str):
        return clean(shown) if shown else '""'
    return clean(json.dumps(shown, ensure_ascii=False, default=str))


def body_lines(body: bytes) -> list[str]:
    """The body as indented JSON when it parses, else a repr of its first bytes."""
    try:
        text = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode()
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        more = f" ... ({len(body)} bytes in all)" if len(body) > MAX_BODY_REPR else ""
        return [repr(body[:MAX_BODY_REPR]) + more]
    return [clean(line) for line in text.splitlines()]


def show_lines(letter: Letter) -> list[str]:
    """Everything about one dead letter: summary, every property and header, the body."""
    props = letter.envelope.properties
    lines = [
        f"dead letter {clean(letter.message_id or '-')}",
        f"  reason:          {clean(letter.reason)}",
        f"  error:           {clean(letter.error)}",
        f"  dead-lettered:   {when(letter.dead_lettered_at)}",
        f"  type:            {clean(letter.message_type or '-')}",
        f"  trace id:        {trace_id_of(letter.headers) or '-'}",
        f"  routing key:     {clean(letter.envelope.routing_key)}",
        f"  redelivered:     {str(letter.envelope.redelivered).lower()}",
        "properties:",
    ]
    for field in dataclasses.fields(Properties):
        if field.name != "headers":
            value = getattr(props, field.name)
            lines.append(f"  {field.name}: {'-' if value is None else _value(value)}")
    lines.append("headers:")
    lines.extend(f"  {clean(str(k))}: {_value(v)}" for k, v in sorted(props.headers.items()))
    lines.append(f"body ({len(letter.envelope.body)} bytes):")
    lines.extend(body_lines(letter.envelope.body))
    return lines


def outcome_text(outcome: Outcome) -> str:
    """What the router would do with a replayed message, in one line."""
    match outcome:
        case Forward(copies=copies):
            where = ", ".join(f"{c.route} -> {c.exchange}/{c.routing_key}"
                              + (" (shadow)" if c.shadow else "") for c in copies)
            return clean(f"would route: {where}")
        case DeadLetter(reason=reason, error=error) | DeadCopy(reason=reason, error=error):
            return clean(f"would dead-letter: {reason.value}: {error}")
        case Delay(delay=delay, reason=reason):
            return clean(f"would be held back {delay:g}s: {reason}")
        case _:
            assert_never(outcome)


def progress_bar(label: str, done: int, total: int, width: int = 20) -> str:
    """``replay [#####.....] 50/100``."""
    filled = width * min(done, total) // total if total > 0 else width
    return f"{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
