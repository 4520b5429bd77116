"""Which alternative of a route gets a copy: a pure function of the message and a snapshot.

``pick`` sees the branches, a *hash* of the message (of its key when the
route has one, else of its message id) and a frozen ``LoadView`` of the
queues and breakers; it reads no clock and draws no random number, so the
same message under the same view always takes the same branch, and a
message delivered twice (a crash, a retry) takes the branch it took before.
``branch_copies`` makes a route's copies for the branch picked and for each
shadow in its sample; the ``Alternatives`` it picks among are compiled at load
(``router.config.alternatives``).

``weighted``
    The hash is a point in [0, 1) laid over the shares in order: one key
    always lands on one branch, and changing 90/10 to 80/20 moves only the
    keys between 0.8 and 0.9.  Without a key the message id spreads
    messages evenly over the shares.
``hash``
    Rendezvous (highest random weight) hashing of the key over the branch
    names: a key stays on its branch while the list is unchanged, and adding
    or removing a branch moves only the keys that must move.
``least_loaded``
    The branch whose queues hold the fewest messages per consumer, counting
    the copies sent since the queues were last looked at (so a stale look
    never sends everything to one queue).  A branch with an open breaker, a
    queue without consumers or a missing queue is skipped; without fresh
    figures the choice is even by message id, open breakers still skipped.
    When every branch is skipped the least bad one is taken anyway: the copy
    is then held by its breaker or waits in its queue, never lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from router.config.alternatives import Alternatives
from router.config.branches import Branch, Strategy
from router.config.topology import RouteSpec
from router.core.outcome import Copy

__all__ = ["NO_VIEW", "Draw", "LoadView", "Picked", "QueueLoad", "Skip", "branch_copies",
           "digest", "key_bytes", "pick", "sampled"]

_SCALE = float(1 << 64)


@dataclass(frozen=True, slots=True)
class QueueLoad:
    """A queue as last seen, plus the copies sent to it since: ``messages`` includes them."""

    messages: int
    consumers: int


@dataclass(frozen=True, slots=True)
class LoadView:
    """What ``least_loaded`` may know: fresh queue loads (None: the queue does not exist)
    and the destinations (exchange, routing key) a breaker closes, with why."""

    loads: Mapping[str, QueueLoad | None] = field(default_factory=dict)
    blocked: Mapping[tuple[str, str], str] = field(default_factory=dict)


NO_VIEW = LoadView()


class Skip(StrEnum):
    """Why least_loaded passed a branch by (a metric label)."""

    CIRCUIT_OPEN = "circuit_open"
    NO_CONSUMER = "no_consumer"
    NO_QUEUE = "no_queue"


@dataclass(frozen=True, slots=True)
class Picked:
    """The branch a copy took, the branches passed over with why, and whether its key was read."""

    branch: Branch
    skipped: tuple[tuple[str, Skip], ...] = ()  # (branch name, why)
    keyless: bool = False  # the route has a key, but it could not be read for this message


def digest(data: bytes) -> int:
    """A stable 64-bit hash (BLAKE2b; Python's ``hash`` changes between processes)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _unit(value: int) -> float:
    return value / _SCALE


def sampled(share: float | None, message: int, salt: str) -> bool:
    """Whether a message is in a ``share`` percent sample (shadows), independently per salt."""
    if share is None:
        return True
    return _unit(digest(message.to_bytes(8, "big") + salt.encode())) * 100.0 < share


def _weighted(branches: tuple[Branch, ...], shares: tuple[float, ...], value: int) -> Branch:
    point = _unit(value) * sum(shares)
    for branch, share in zip(branches, shares, strict=True):
        if point < share:
            return branch
        point -= share
    return next(b for b, s in zip(reversed(branches), reversed(shares), strict=True) if s > 0)


def _rendezvous(branches: tuple[Branch, ...], value: int) -> Branch:
    seed = value.to_bytes(8, "big")
    return max(branches, key=lambda b: digest(seed + b.name.encode()))


def _load(queues: tuple[str, ...], view: LoadView) -> float | Skip | None:
    """Messages per consumer over ``queues``; a reason to skip; or None when not known."""
    messages = consumers = 0
    for queue in queues:
        if queue not in view.loads:
            return None
        load = view.loads[queue]
        if load is None:
            return Skip.NO_QUEUE
        if load.consumers == 0:
            return Skip.NO_CONSUMER
        messages += load.messages
        consumers += load.consumers
    return messages / consumers if consumers else None


def _least_loaded(branches: tuple[Branch, ...], targets: tuple[tuple[str, str], ...],
                  queues: tuple[tuple[str, ...], ...], value: int, view: LoadView) -> Picked:
    skipped: list[tuple[str, Skip]] = []
    scored: list[tuple[Branch, float | None]] = []
    for branch, target, watched in zip(branches, targets, queues, strict=True):
        load = _load(watched, view) if watched else None
        if target in view.blocked:
            skipped.append((branch.name, Skip.CIRCUIT_OPEN))
        elif isinstance(load, Skip):
            skipped.append((branch.name, load))
        else:
            scored.append((branch, load))
    if not scored:  # every branch is unavailable: the least bad one, by message id
        return Picked(_rendezvous(branches, value), tuple(skipped))
    if any(load is None for _, load in scored):  # no fresh figures: even spread
        return Picked(_rendezvous(tuple(b for b, _ in scored), value), tuple(skipped))
    lowest = min(load for _, load in scored if load is not None)
    tied = tuple(b for b, load in scored if load is not None and load - lowest < 1e-9)
    return Picked(_rendezvous(tied, value), tuple(skipped))


def pick(choice: Alternatives, key: int | None, message: int, view: LoadView = NO_VIEW,
         *, keyless: bool = False) -> Picked:
    """The branch for one copy: ``key`` hashes the route's key (None: it has none or it
    could not be read, ``keyless`` says which), ``message`` the message id."""
    value = message if key is None else key
    match choice.strategy:
        case Strategy.WEIGHTED:
            return Picked(_weighted(choice.branches, choice.shares, value), keyless=keyless)
        case Strategy.HASH:
            return Picked(_rendezvous(choice.branches, value), keyless=keyless)
        case Strategy.LEAST_LOADED:
            return _least_loaded(choice.branches, choice.targets, choice.queues, message, view)


def key_bytes(value: Any) -> bytes | None:
    """A key's value as bytes to hash: text as UTF-8, anything else as sorted JSON."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)
    except (orjson.JSONEncodeError, TypeError):
        return None


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
        except Exception:  # noqa: BLE001 - CEL: a key that errors is no key (see the module docstring)
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
