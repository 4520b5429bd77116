"""Which dead letters a console page or action means (pure).

A letter has no name of its own (a message id may be missing or repeated),
so the console names it by a hash of what it carries (``letter_key``), and a
group by a hash of its reason, message type and error fingerprint
(``group_key``).  ``Selection`` is what a form posts: chosen letters, one
group, or everything matching a filter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from router.tools.letters import Filter, Group, Letter, fingerprint, make_filter

__all__ = ["FILTER_FIELDS", "Selection", "filter_of", "group_key", "key_of_group", "letter_group",
           "letter_key"]

# Query parameter -> ``make_filter`` argument.
FILTER_FIELDS = {"reason": "reason", "type": "message_type", "route": "route",
                 "publisher": "publisher", "since": "since", "until": "until"}


def _hash(*parts: str | None) -> str:
    text = "\0".join(p or "" for p in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def letter_key(letter: Letter) -> str:
    """A name for one dead letter, stable while it sits in the queue."""
    at = letter.dead_lettered_at.isoformat() if letter.dead_lettered_at else None
    body = hashlib.sha256(letter.envelope.body).hexdigest()
    return _hash(letter.message_id, letter.reason, letter.error, at, body)[:16]


def group_key(reason: str, digest: str, message_type: str | None) -> str:
    """A name for a group of letters with one reason, type and error fingerprint."""
    return _hash(reason, digest, message_type)[:12]


def key_of_group(g: Group) -> str:
    return group_key(g.reason, g.fingerprint, g.types[0] if g.types else None)


def letter_group(letter: Letter) -> str:
    return group_key(letter.reason, fingerprint(letter.reason, letter.error)[1],
                     letter.message_type)


def filter_of(params: Mapping[str, str], now: datetime) -> tuple[Filter, dict[str, str]]:
    """The filter a query string asks for, and its non-empty fields (``ValueError``)."""
    given = {k: params[k].strip() for k in FILTER_FIELDS if params.get(k, "").strip()}
    return make_filter(now=now, **{FILTER_FIELDS[k]: v for k, v in given.items()}), given


@dataclass(frozen=True, slots=True)
class Selection:
    """Letters by key, a group by key, or (neither given) all that ``within`` matches."""

    within: Filter
    keys: frozenset[str] = frozenset()
    group: str | None = None

    def matches(self, letter: Letter) -> bool:
        if not self.within.matches(letter):
            return False
        if self.keys:
            return letter_key(letter) in self.keys
        return self.group is None or letter_group(letter) == self.group

    def among(self, letters: Iterable[Letter]) -> list[Letter]:
        return [x for x in letters if self.matches(x)]
