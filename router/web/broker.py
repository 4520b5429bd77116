"""The console's side of the broker: queue depths and the dead-letter queue.

A connection of its own (named ``mcp-router console``), apart from the
router's, so looking never slows routing.  Dead letters are browsed and
replayed exactly as ``mcp-router dlq`` does (``router.tools.dlq``): fetched
unacked, acked only once the replay is confirmed, the rest returned when the
channel closes.  One operation on the dead-letter queue at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from router.broker.amqp import Connection, close_quietly, connect
from router.broker.queuewatch import Looker
from router.config.configuration import Config
from router.core.breakers import QueueStatus
from router.errors import BrokerFailure, BrokerUnavailable, Unroutable
from router.tools.dlq import DeadLetterQueue, Held, Replayer, open_queue, replay_one
from router.tools.letters import Letter, replay_target

__all__ = ["MAX_BROWSE", "Browse", "ConsoleBroker", "Replayed"]

MAX_BROWSE = 5000  # dead letters one page looks at
DEPTH_TTL = 2.0  # seconds a queue depth is reused
BROWSE_TTL = 1.0
RETRY_AFTER = 5.0  # seconds between attempts to connect

Keep = Callable[[Letter], bool]
Progress = Callable[[int, int], None]  # done, failed


@dataclass(frozen=True, slots=True)
class Browse:
    letters: tuple[Letter, ...]  # oldest first
    total: int  # in the queue; more than ``letters`` when capped
    stale: bool = False  # from before the replay or purge that is running now


@dataclass
class Replayed:
    done: int = 0
    failed: int = 0
    notes: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # of the letters replayed


class ConsoleBroker:
    """Opens its connection when first needed and again after it was lost."""

    def __init__(self, url: str, config: Callable[[], Config]) -> None:
        self.url, self.config = url, config
        self._connection: Connection | None = None
        self._looker: Looker | None = None
        self._dlq_lock = asyncio.Lock()
        self._depths: tuple[float, dict[str, QueueStatus | None]] = (-DEPTH_TTL, {})
        self._browsed: tuple[float, Browse] | None = None
        self._last: Browse | None = None
        self._failed: tuple[float, BrokerUnavailable] | None = None  # until when, why

    async def _open(self) -> Connection:
        """The connection; after a failed attempt, the same failure for ``RETRY_AFTER`` s
        (pages refresh every few seconds and must not each wait for a broker that is away)."""
        if self._connection is None or self._connection.is_closed:
            if self._failed is not None and time.monotonic() < self._failed[0]:
                raise self._failed[1]
            try:
                self._connection = await connect(self.url, "mcp-router console")
            except BrokerUnavailable as exc:
                self._failed = (time.monotonic() + RETRY_AFTER, exc)
                raise
            self._failed = None
            self._looker = Looker(self._connection)
        return self._connection

    async def close(self) -> None:
        if self._connection is not None:
            await close_quietly(self._connection)

    async def depths(self, names: Sequence[str]) -> dict[str, QueueStatus | None]:
        """Ready messages and consumers of each queue (None: it does not exist)."""
        at, known = self._depths
        if time.monotonic() - at < DEPTH_TTL and all(n in known for n in names):
            return known
        try:
            await self._open()
            assert self._looker is not None  # noqa: S101 -- set by _open
            found = {name: await self._looker.look(name) for name in names}
        except BrokerFailure as exc:
            raise BrokerUnavailable(f"cannot read the queues: {exc}") from exc
        self._depths = (time.monotonic(), found)
        return found

    async def browse(self) -> Browse:
        """The dead letters (at most ``MAX_BROWSE``); every one stays in the queue."""
        if self._browsed is not None and time.monotonic() - self._browsed[0] < BROWSE_TTL:
            return self._browsed[1]
        if self._dlq_lock.locked() and self._last is not None:
            # A replay or purge holds the queue: what it has not fetched yet would be
            # hidden from it while a browse held it, so show the list from before.
            return dataclasses.replace(self._last, stale=True)
        async with self._queue() as dlq:
            capped = dataclasses.replace(dlq, count=min(dlq.count, MAX_BROWSE))
            held = await capped.fetch(lambda _: True)
            seen = Browse(tuple(h.letter for h in held), dlq.count)
        self._browsed = (time.monotonic(), seen)
        self._last = seen
        return seen

    @contextlib.asynccontextmanager
    async def _queue(self) -> AsyncIterator[DeadLetterQueue]:
        async with self._dlq_lock:
            try:
                connection = await self._open()
                async with open_queue(connection, self.config().topology.dead_letter.queue) as q:
                    yield q
            except BrokerFailure as exc:
                raise BrokerUnavailable(f"dead-letter queue: {exc}") from exc
            finally:
                self._browsed = None

    async def replay(self, keep: Keep, *, to: str | None = None, body: bytes | None = None,
                     progress: Progress | None = None) -> Replayed:
        """Replay the kept letters (to the ingress unless ``to``), ``body`` replacing theirs."""
        report = Replayed()
        ingress = self.config().topology.ingress.exchange
        async with self._queue() as dlq:
            held = await dlq.fetch(keep)
            replayer = Replayer(await self._open())
            for h in held:
                exchange, key = replay_target(h.letter, ingress=ingress, to=to)
                sent = _with_body(h, body)
                failure = await replay_one(dlq, replayer, sent, exchange, key)
                if failure is None:
                    report.done += 1
                    report.ids.append(h.letter.message_id or "-")
                else:
                    report.failed += 1
                    report.notes.append(f"{h.letter.message_id or '-'}: {failure}")
                if progress is not None:
                    progress(report.done, report.failed)
                if failure is not None and not isinstance(failure, Unroutable):
                    report.notes.append("stopped: the broker did not confirm a replay")
                    break
        return report

    async def purge(self, keep: Keep, progress: Progress | None = None) -> list[str]:
        """Delete the kept letters for good; their message ids."""
        gone: list[str] = []
        async with self._queue() as dlq:
            for h in await dlq.fetch(keep):
                await dlq.ack(h)
                gone.append(h.letter.message_id or "-")
                if progress is not None:
                    progress(len(gone), 0)
        return gone


def _with_body(held: Held, body: bytes | None) -> Held:
    if body is None:
        return held
    envelope = dataclasses.replace(held.letter.envelope, body=body)
    return Held(held.tag, dataclasses.replace(held.letter, envelope=envelope))
