"""Alternatives and shadows of a route, as ``topology.yaml`` writes them (frozen values).

A route's ``to`` fans out: every destination gets a copy.  Its
``alternatives`` are a choice: exactly one of them gets each copy, picked by
the route's ``strategy``::

    - name: billing
      message_type: OrderCreated
      strategy: weighted              # least_loaded | weighted | hash
      key: message.customer_id        # CEL; weighted: sticky per key; hash: required
      alternatives:
        - {exchange: orders, routing_key: billing.v1, share: 90}
        - {exchange: orders, routing_key: billing.v2, share: 10, version: 2, name: canary}
      shadow:
        - {exchange: orders, routing_key: billing.next, share: 25}

``shadow`` destinations get a copy too (of ``share`` percent of the messages),
but nothing that happens to it touches the real copies.  The choice itself is
``router.core.choose``; this module only reads and checks the keys, collecting
located problems, never raising.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from router.config.fields import Fields, Shape
from router.config.source import Document

__all__ = ["Branch", "Choice", "Strategy", "parse_choice", "parse_shadows"]

CHOICE_KEYS = frozenset({"strategy", "key", "alternatives", "shadow", "check_every"})
MIN_CHECK, MAX_CHECK, DEFAULT_CHECK = 0.05, 3600.0, 1.0  # least_loaded: seconds between looks
SHARE_TOTAL = 100.0  # shares are percentages
_EPSILON = 1e-6


class Strategy(StrEnum):
    LEAST_LOADED = "least_loaded"  # fewest messages per consumer in the branch's queues
    WEIGHTED = "weighted"  # shares; sticky by ``key`` when given, else by message id
    HASH = "hash"  # rendezvous hash of ``key`` over the branches


@dataclass(frozen=True, slots=True)
class Branch:
    """One alternative (or shadow) destination of a route."""

    exchange: str
    routing_key: str | None  # None: the message type
    name: str  # label in metrics, headers and plan: ``name`` or ``exchange/routing_key``
    share: float | None = None  # percent; None: an equal share (weighted), all (shadow)
    version: int | None = None  # the schema version its copies carry (None: the route's)
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    """How a route picks one of its alternatives for each copy."""

    strategy: Strategy
    branches: tuple[Branch, ...]
    key: str | None = None  # CEL expression
    key_line: int | None = None
    check_every: float = DEFAULT_CHECK  # least_loaded: how often its queues are looked at

    def shares(self) -> tuple[float, ...]:
        """Each branch's share in percent (weighted: as written or equal; otherwise equal)."""
        if self.strategy is Strategy.WEIGHTED and self.branches[0].share is not None:
            return tuple(b.share or 0.0 for b in self.branches)
        return tuple(SHARE_TOTAL / len(self.branches) for _ in self.branches)


def _branch(doc: Document, path: tuple[str | int, ...], raw: Any, problems: list[Any],
            what: str) -> Branch | None:
    f = Fields.of(doc, path, raw, problems,
                  shape=Shape({"exchange", "routing_key", "share", "version", "name"}, what))
    if not f.valid:
        return None
    exchange = f.name("exchange")
    key = f.get("routing_key", str, "") if "routing_key" in f.data else None
    share = f.get("share", float, 0.0) if "share" in f.data else None
    if share is not None and not 0.0 <= share <= SHARE_TOTAL:
        f.fail(("share",), f"'share' is a percentage from 0 to 100, got {share:g}")
    version = f.get("version", int, 1) if "version" in f.data else None
    if version is not None and version < 1:
        f.fail(("version",), f"'version' must be a schema version (1 or more), got {version}")
    name = f.name("name") if "name" in f.data else f"{exchange}/{key if key is not None else '*'}"
    branch = Branch(exchange, key, name, share, version, f.line())
    return branch if f.valid else None


def _branches(f: Fields, key: str, what: str) -> tuple[list[Branch], bool]:
    raw = f.get(key, list, [])
    found: list[Branch] = []
    valid = True
    for j, item in enumerate(raw):
        branch = _branch(f.doc, (*f.path, key, j), item, f.problems, what)
        if branch is None:
            valid = f.valid = False  # the route is not valid either
        else:
            found.append(branch)
    seen: dict[tuple[str, str | None], int] = {}
    names: set[str] = set()
    for j, b in enumerate(found):
        if (b.exchange, b.routing_key) in seen:
            f.fail((key, j), f"{what} {b.name!r} repeats {what} "
                             f"{seen[b.exchange, b.routing_key] + 1}: each destination once")
        elif b.name in names:
            f.fail((key, j, "name"), f"{what} name {b.name!r} is used twice")
        seen.setdefault((b.exchange, b.routing_key), j)
        names.add(b.name)
    return found, valid and f.valid


def _check_shares(f: Fields, strategy: Strategy, branches: list[Branch]) -> None:
    given = [b.share is not None for b in branches]
    if strategy is not Strategy.WEIGHTED:
        if any(given):
            f.fail(("alternatives", given.index(True), "share"),
                   f"'share' needs strategy weighted ({strategy.value} decides by itself)")
        return
    if any(given) and not all(given):
        f.fail(("alternatives", given.index(False)),
               "give every alternative a 'share', or none (equal shares)")
        return
    total = sum(b.share or 0.0 for b in branches)
    if all(given) and abs(total - SHARE_TOTAL) > _EPSILON:
        f.fail(("alternatives",), f"the shares are percentages and must add up to 100; "
                                  f"these add up to {total:g}")


def _key(f: Fields, strategy: Strategy) -> str | None:
    key = f.get("key", str, "") if "key" in f.data else None
    if key is not None and not key.strip():
        f.fail(("key",), "'key' must be a CEL expression, such as message.customer_id")
    if strategy is Strategy.HASH and key is None:
        f.fail((), "strategy hash needs a 'key' (a CEL expression, such as "
                   "message.customer_id)")
    if strategy is Strategy.LEAST_LOADED and key is not None:
        f.fail(("key",), "'key' means nothing to least_loaded, which decides by queue depth")
    return key


def _check_every(f: Fields, strategy: Strategy, duration: Any) -> float:
    if "check_every" not in f.data:
        return DEFAULT_CHECK
    if strategy is not Strategy.LEAST_LOADED:
        f.fail(("check_every",), "'check_every' needs strategy least_loaded")
    seconds = duration(f.data["check_every"])
    if seconds is None or not MIN_CHECK <= seconds <= MAX_CHECK:
        f.fail(("check_every",), "check_every must be a duration such as 500ms or 2s "
                                 f"(from {MIN_CHECK:g}s to {MAX_CHECK:g}s)")
        return DEFAULT_CHECK
    return float(round(seconds, 3))


def parse_choice(f: Fields, duration: Any) -> Choice | None:
    """``strategy``, ``key``, ``alternatives`` and ``check_every`` of the route ``f`` reads.

    ``duration`` turns ``"500ms"`` into seconds (None when it is not one)."""
    if "alternatives" not in f.data:
        for name in ("strategy", "key", "check_every"):
            if name in f.data:
                f.fail((name,), f"{name!r} needs 'alternatives' (the destinations to choose "
                               "among)")
        return None
    branches, valid = _branches(f, "alternatives", "alternative")
    if valid and len(branches) < 2:
        f.fail(("alternatives",), "'alternatives' needs at least two destinations (a single "
                                  "one belongs in 'to')")
    if "strategy" not in f.data:
        f.fail(("alternatives",), "'alternatives' needs a 'strategy': "
                                  + ", ".join(s.value for s in Strategy))
        return None
    value = f.choice("strategy", tuple(s.value for s in Strategy), Strategy.WEIGHTED.value)
    strategy = Strategy(value)
    key = _key(f, strategy)
    check_every = _check_every(f, strategy, duration)
    if valid:
        _check_shares(f, strategy, branches)
    if not f.valid:
        return None
    return Choice(strategy, tuple(branches), key, f.line(("key",)) if key else f.line(),
                  check_every)


def parse_shadows(f: Fields) -> tuple[Branch, ...]:
    """The route's ``shadow`` destinations (``share``: percent of messages, default all)."""
    if "shadow" not in f.data:
        return ()
    shadows, _ = _branches(f, "shadow", "shadow")
    return tuple(shadows)
