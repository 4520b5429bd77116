"""Dead letters as the ``dlq`` commands see them (pure: no I/O, the clock is passed in).

``read_letter`` turns a delivery from the dead-letter queue into a ``Letter``:
the router's ``x-mcp-*`` headers, or for a message the broker dead-lettered
itself (the ingress queue's delivery limit) the first ``x-death`` entry.
``Filter`` selects letters; ``fingerprint`` and ``group`` count them by reason
and normalised error; ``replay_properties`` and ``replay_target`` say what a
replay sends where.  Rendering for the terminal is ``router.tools.lettertext``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from router.core import headers as xmcp
from router.core.envelope import BROKER_BOOKKEEPING, Envelope, Properties, text_value

__all__ = ["Filter", "Group", "Letter", "fingerprint", "group", "make_filter", "normalise",
           "parse_time", "read_letter", "replay_envelope", "replay_properties", "replay_target"]





_MAX_COUNT = 2**31 - 1  # counts are written back as signed 32-bit AMQP integers


def _int(value: Any) -> int | None:
    """A count from a header, if it is one; held in the range the router writes."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() \
            and len(value.strip()) <= 18:
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, 0), _MAX_COUNT)
    return None


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    text = text_value(value)
    try:
        return _utc(datetime.fromisoformat(text.strip())) if text else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter: the delivery as it sits in the queue, and what its headers say."""

    envelope: Envelope  # body, properties, and the dead-letter routing key
    reason: str
    error: str
    message_type: str | None
    dead_lettered_at: datetime | None
    attempts: int | None
    replays: int
    original_exchange: str | None
    original_routing_key: str | None
    route: str | None = None
    destination_exchange: str | None = None
    destination_routing_key: str | None = None

    @property
    def message_id(self) -> str | None:
        return self.envelope.properties.message_id

    @property
    def headers(self) -> Mapping[str, Any]:
        return self.envelope.properties.headers

    @property
    def publisher(self) -> str | None:
        """Who published the message: its broker-validated user, as the router recorded it."""
        return text_value(self.headers.get(xmcp.PUBLISHER)) or self.envelope.properties.app_id


def _first_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return {}


def read_letter(envelope: Envelope) -> Letter:
    """What a dead letter says about itself; never raises, whatever its headers hold."""
    h = envelope.properties.headers
    death = _first_death(h) if xmcp.REASON not in h else {}
    keys = death.get("routing-keys")
    death_key = text_value(keys[0]) if isinstance(keys, list | tuple) and keys else None
    if xmcp.REASON in h or not death:
        reason = text_value(h.get(xmcp.REASON)) or "unknown"
        error = text_value(h.get(xmcp.ERROR)) or ""
        at = _stamp(h.get(xmcp.DEAD_LETTERED_AT))
        original_exchange = text_value(h.get(xmcp.ORIGINAL_EXCHANGE))
        original_key = text_value(h.get(xmcp.ORIGINAL_ROUTING_KEY))
        rest = envelope.routing_key.removeprefix(f"{reason}.")
        guessed = None if rest == envelope.routing_key or (rest == "unknown"
                                                           and not original_key) else rest
    else:
        reason = text_value(death.get("reason")) or "unknown"
        error = f"dead-lettered by the broker: {reason} in queue {text_value(death.get('queue'))!r}"
        at = _stamp(death.get("time"))
        original_exchange, original_key = text_value(death.get("exchange")), death_key
        guessed = death_key or None
    return Letter(
        envelope=envelope,
        reason=reason,
        error=error,
        message_type=envelope.properties.type or guessed,
        dead_lettered_at=at,
        attempts=_int(h.get(xmcp.ATTEMPTS)),
        replays=max(_int(h.get(xmcp.REPLAYS)) or 0, 0),
        original_exchange=original_exchange,
        original_routing_key=original_key,
        route=text_value(h.get(xmcp.ROUTE)),
        destination_exchange=text_value(h.get(xmcp.DESTINATION_EXCHANGE)),
        destination_routing_key=text_value(h.get(xmcp.DESTINATION_ROUTING_KEY)),
    )


_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC when no offset is given) or an age before ``now`` (30s, 2h, 1d)."""
    age = _AGE.fullmatch(text.strip())
    try:
        if age:
            return now - timedelta(seconds=float(age[1]) * _UNITS[age[2].lower()])
        return _utc(datetime.fromisoformat(text.strip()))
    except (ValueError, OverflowError):
        pass
    raise ValueError(f"not a time: {text!r} (use ISO 8601 such as 2026-11-24T12:00:00Z, "
                     "or an age such as 30s, 15m, 2h, 1d)")


@dataclass(frozen=True, slots=True)
class Filter:
    """Which dead letters a command acts on; every criterion given must hold.

    ``reason`` and ``message_type`` are globs (``Order*``); a letter without a
    time matches no ``since``/``until``.
    """

    reason: str | None = None
    message_type: str | None = None
    message_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    route: str | None = None  # glob on the route of an undeliverable copy
    publisher: str | None = None  # glob on x-mcp-publisher (else app_id)

    def matches(self, letter: Letter) -> bool:
        globs = ((self.reason, letter.reason), (self.message_type, letter.message_type),
                 (self.route, letter.route), (self.publisher, letter.publisher))
        if any(p is not None and not fnmatchcase(v or "", p) for p, v in globs):
            return False
        if self.message_id is not None and letter.message_id != self.message_id:
            return False
        at = letter.dead_lettered_at
        if self.since is not None and (at is None or at < self.since):
            return False
        return self.until is None or (at is not None and at <= self.until)


def make_filter(*, now: datetime, **criteria: str | None) -> Filter:
    """A ``Filter`` from command-line text, a keyword per field (``since``/``until``: times).

    An unknown criterion is a ``TypeError``; ``ValueError`` says what is wrong with a time.
    """
    unknown = set(criteria) - set(Filter.__dataclass_fields__)
    if unknown:
        raise TypeError(f"make_filter() got unexpected criteria {sorted(unknown)}")
    since, until = criteria.pop("since", None), criteria.pop("until", None)
    start = parse_time(since, now) if since is not None else None
    end = parse_time(until, now) if until is not None else None
    if start is not None and end is not None and start > end:
        raise ValueError("--since is later than --until")
    return Filter(since=start, until=end, **criteria)


_NORMALISERS = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?"),
     "<time>"),
    (re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""), "<str>"),
    (re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I),
     "<hex>"),
    (re.compile(r"(?<![\w.])(?<!\w-)[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?\b", re.I), "<n>"),
    (re.compile(r"\s+"), " "),
)


def normalise(error: str) -> str:
    """``error`` with what varies between messages replaced by placeholders.

    UUIDs, timestamps, quoted strings, hex ids and numbers become ``<uuid>``,
    ``<time>``, ``<str>``, ``<hex>`` and ``<n>``, so one cause reads as one text.
    """
    for pattern, placeholder in _NORMALISERS:
        error = pattern.sub(placeholder, error)
    return error.strip()


def fingerprint(reason: str, error: str) -> tuple[str, str]:
    """The normalised error and a short hash of reason and normalised error."""
    text = normalise(error)
    digest = hashlib.sha256(f"{reason}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()
    return text, digest[:10]


@dataclass(frozen=True, slots=True)
class Group:
    """Dead letters sharing a reason and an error fingerprint."""

    reason: str
    fingerprint: str
    error: str  # normalised
    count: int
    first: datetime | None
    last: datetime | None
    types: tuple[str, ...]
    example: str | None  # one message id


def group(letters: Iterable[Letter], *, by_type: bool = False) -> list[Group]:
    """Groups by reason and fingerprint (and message type with ``by_type``), largest first."""
    found: dict[tuple[str, str, str | None], list[Letter]] = {}
    texts: dict[str, str] = {}
    for letter in letters:
        text, digest = fingerprint(letter.reason, letter.error)
        texts[digest] = text
        kind = letter.message_type if by_type else None
        found.setdefault((letter.reason, digest, kind), []).append(letter)
    groups = []
    for (reason, digest, _), members in found.items():
        times = [m.dead_lettered_at for m in members if m.dead_lettered_at is not None]
        types = sorted({m.message_type for m in members if m.message_type is not None})
        example = next((m.message_id for m in members if m.message_id), None)
        groups.append(Group(reason, digest, texts[digest], len(members),
                            min(times, default=None), max(times, default=None),
                            tuple(types), example))
    return sorted(groups, key=lambda g: (-g.count, g.reason, g.error))


def replay_properties(letter: Letter) -> Properties:
    """The replayed message's properties: the dead letter's, without the router's verdict.

    Every ``x-mcp-*`` header and the broker's dead-letter bookkeeping go; trace
    context and all other headers stay; ``x-mcp-replays`` counts this replay.
    No ``user_id``: RabbitMQ refuses one that is not the connection's user.
    """
    # A replay is a new message: the broker writes its bookkeeping afresh.
    headers = {k: v for k, v in letter.headers.items()
               if not xmcp.is_ours(k) and k not in BROKER_BOOKKEEPING}
    headers[xmcp.REPLAYS] = min(letter.replays + 1, _MAX_COUNT)
    return letter.envelope.properties.with_headers(headers, user_id=None)


def replay_target(letter: Letter, *, ingress: str, to: str | None = None,
                  routing_key: str | None = None) -> tuple[str, str]:
    """Exchange and routing key of a replay.

    To the ingress: where the message was first published (its routing key,
    else its type).  To another exchange: ``routing_key``, else where the
    undeliverable copy was going, else the original routing key.
    """
    original = letter.original_routing_key or letter.message_type or ""
    if routing_key is not None:
        return to or ingress, routing_key
    if to is None:
        return ingress, original
    return to, letter.destination_routing_key or original


def replay_envelope(letter: Letter, exchange: str, routing_key: str) -> Envelope:
    """The replayed message as the router would receive it (for ``--dry-run``)."""
    return Envelope(letter.envelope.body, replay_properties(letter), exchange, routing_key)
