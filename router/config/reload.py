"""Hot reload: a new configuration is checked whole, then swapped in between messages.

``review_reload`` (pure) compares the running and the new configuration: what
RabbitMQ cannot change in place (a queue's type or arguments, an exchange's
type) and the ingress or dead-letter settings (the router consumes and
publishes to them) refuse the reload with a message saying so; everything
else is listed as changes.  Entities removed from the file are left on the
broker (deleting queues loses messages; that stays an operator's decision).

``Watcher`` notices edits by polling modification times, cheap and
dependency-free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from router.config.configuration import Config, load_config
from router.config.topology import Exchange, Queue
from router.errors import ConfigError, TopologyConflict

__all__ = [
    "ReloadResult",
    "ReloadReview",
    "Watcher",
    "fingerprint",
    "prepare_reload",
    "review_reload",
]


@dataclass(frozen=True)
class ReloadReview:
    """What a reload would change, and why it cannot be done live (any refusal stops it)."""

    refusals: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)


def _queue_shape(q: Queue) -> tuple[object, ...]:
    return (q.type, q.durable, q.auto_delete, tuple(sorted(q.broker_arguments().items())))


def _exchange_shape(e: Exchange) -> tuple[object, ...]:
    return (e.type, e.durable, e.auto_delete, e.internal, e.arguments)


@dataclass(frozen=True, slots=True)
class _Entity:
    """A kind of broker entity: its name, what RabbitMQ cannot change live, and what to do."""

    kind: str
    shape: Callable[[Any], tuple[object, ...]]
    advice: str


_QUEUE = _Entity("queue", _queue_shape,
                 ": delete and re-create the queue (or use a broker policy) and restart")
_EXCHANGE = _Entity("exchange", _exchange_shape, "")


def _compare(review: ReloadReview, entity: _Entity, old: tuple[Any, ...],
             new: tuple[Any, ...]) -> None:
    """New entities are changes; one whose settings differ cannot be changed live."""
    before = {e.name: e for e in old}
    for e in new:
        if e.name not in before:
            review.changes.append(f"new {entity.kind} {e.name} ({e.type})")
        elif entity.shape(before[e.name]) != entity.shape(e):
            review.refusals.append(f"{entity.kind} {e.name!r}: type or arguments changed; "
                                   f"RabbitMQ cannot change them in place{entity.advice}")


def review_reload(old: Config, new: Config) -> ReloadReview:
    """What swapping ``old`` for ``new`` would do, or why it cannot be done live."""
    review = ReloadReview()
    ot, nt = old.topology, new.topology
    if (ot.ingress, ot.dead_letter, ot.control) != (nt.ingress, nt.dead_letter, nt.control):
        review.refusals.append("the ingress, dead-letter and control settings change only with "
                               "a restart (the router consumes from and publishes to them)")
    _compare(review, _QUEUE, old.broker_queues(), new.broker_queues())
    _compare(review, _EXCHANGE, ot.all_exchanges(), nt.all_exchanges())
    review.changes.extend(f"new binding {b.exchange} -> {b.queue} [{b.routing_key}]"
                        for b in set(nt.all_bindings()) - set(ot.all_bindings()))
    old_routes, new_routes = {r.name: r for r in ot.routes}, {r.name: r for r in nt.routes}
    review.changes.extend(f"route {n} added" for n in new_routes.keys() - old_routes.keys())
    review.changes.extend(f"route {n} removed" for n in old_routes.keys() - new_routes.keys())
    review.changes.extend(f"route {n} changed" for n in new_routes.keys() & old_routes.keys()
                        if new_routes[n] != old_routes[n])
    versions = {(t, v.version) for t, vs in new.registry.types.items() for v in vs}
    previous = {(t, v.version) for t, vs in old.registry.types.items() for v in vs}
    review.changes.extend(f"schema {t} v{v} added" for t, v in sorted(versions - previous))
    if new.policies != old.policies:
        review.changes.append("policies changed")
    review.changes.extend(f"data key {kid} added" for kid in sorted(new.keys.kids()
                                                                  - old.keys.kids()))
    return review


def _files(directory: Path) -> Iterator[Path]:
    yield directory / "topology.yaml"
    for sub in ("schemas", "policies", "keys"):
        root = directory / sub
        if root.is_dir():
            yield from (p for p in root.rglob("*") if p.is_file())


def fingerprint(directory: Path) -> frozenset[tuple[str, int, int]]:
    """Names, modification times and sizes of every configuration file."""
    found = set()
    for path in _files(directory):
        try:
            stat = path.stat()
        except OSError:
            continue
        found.add((str(path), stat.st_mtime_ns, stat.st_size))
    return frozenset(found)


@dataclass
class Watcher:
    """Says when the configuration files changed since the last look."""

    directory: Path
    last: frozenset[tuple[str, int, int]] = frozenset()

    def __post_init__(self) -> None:
        self.last = fingerprint(self.directory)

    def changed(self) -> bool:
        now = fingerprint(self.directory)
        if now == self.last:
            return False
        self.last = now
        return True


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did: ``ok`` with the changes, or the problems that stopped it."""

    ok: bool
    problems: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"reloaded": self.ok, "problems": list(self.problems),
                "changes": list(self.changes)}


async def prepare_reload(current: Config,
                         declare: Callable[[Config], Awaitable[object]] | None
                         ) -> tuple[Config | None, ReloadResult]:
    """Load and check the directory again, review, declare what is new; nothing swapped here.

    Returns the new configuration to swap in (None when refused) and the result.
    """
    try:
        new = await asyncio.to_thread(load_config, current.directory)
    except ConfigError as exc:
        return None, ReloadResult(False, tuple(str(p) for p in exc.problems))
    except Exception as exc:  # noqa: BLE001 -- a bug in a checker must not hide the refusal
        return None, ReloadResult(False, (f"{current.directory}: the configuration did not "
                                          f"load: {type(exc).__name__}: {exc}",))
    review = review_reload(current, new)
    if review.refusals:
        return None, ReloadResult(False, tuple(review.refusals))
    if declare is not None:
        try:
            await declare(new)
        except TopologyConflict as exc:
            return None, ReloadResult(False, tuple(exc.conflicts))
    return new, ReloadResult(True, changes=tuple(review.changes))
