"""A counted stream of messages for fault tests, and the ledger that settles it.

``LedgerPublisher`` is an at-least-once publisher: every message is confirmed
by the broker, and one whose confirm is lost to a fault is published again
after reconnecting (so the ingress itself may see duplicates, as in real life).
``Ledger`` then counts, per message id, what ended up routed and what
dead-lettered: nothing may be missing; duplicates are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest

Probe = Callable[[], Awaitable[bool]]

DRAIN_PREFETCH = 100
FLOWING = 200  # routed copies (half a second at RATE) that show the stream runs through the router
IDLE = 1.0  # seconds without an arrival before the drainer looks again, on another node


class _Nodes:
    """Broker URLs taken in turn: a client that lost one node tries the next."""

    def __init__(self, urls: Sequence[str]) -> None:
        self._cycle = itertools.cycle(list(urls))

    async def connect(self) -> aio_pika.abc.AbstractConnection:
        return await asyncio.wait_for(aio_pika.connect(next(self._cycle)), 5)


@dataclass
class Ledger:
    """What went in and where it ended up."""

    name: str
    sent: set[str] = field(default_factory=set)
    routed: Counter[str] = field(default_factory=Counter)
    dead: Counter[str] = field(default_factory=Counter)
    recovery: float | None = None  # s from the fault clearing to the router working again
    settled_after: float | None = None  # s from the fault clearing to all accounted for

    @property
    def lost(self) -> set[str]:
        return self.sent - set(self.routed) - set(self.dead)

    @property
    def duplicated(self) -> int:
        copies = sum(self.routed.values()) + sum(self.dead.values())
        return copies - len(set(self.routed) | set(self.dead))

    def cells(self) -> list[str]:
        """One row of the fault table: in, routed, dead-lettered, duplicated, lost, recovery."""
        recovery = "n/a" if self.recovery is None else f"{self.recovery:.1f} s"
        return [f"{len(self.sent):,}", f"{len(set(self.routed)):,}",
                str(len(set(self.dead) - set(self.routed))), str(self.duplicated),
                str(len(self.lost)), recovery]

    def report(self) -> str:
        recovery = "n/a" if self.recovery is None else f"{self.recovery:.2f}s"
        settled = "n/a" if self.settled_after is None else f"{self.settled_after:.2f}s"
        return (f"LEDGER {self.name}: in={len(self.sent)} routed={len(set(self.routed))} "
                f"dead-lettered={len(set(self.dead) - set(self.routed))} "
                f"duplicated={self.duplicated} lost={len(self.lost)} "
                f"recovery={recovery} all-settled={settled}")


class LedgerPublisher:
    """Publishes numbered ids at ``rate``/s to an exchange, reconnecting through faults."""

    def __init__(self, exchange: str, prefix: str, body: bytes, message_type: str,
                 urls: Sequence[str]) -> None:
        self.exchange, self.prefix, self.body, self.type = exchange, prefix, body, message_type
        self.nodes = _Nodes(urls)
        self.confirmed: set[str] = set()
        self.republished = 0

    async def _connect(self, deadline: float) -> aio_pika.abc.AbstractExchange:
        while True:
            try:
                connection = await self.nodes.connect()
                channel = await connection.channel(publisher_confirms=True)
                return await channel.get_exchange(self.exchange, ensure=False)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def run(self, rate: float, stop: asyncio.Event, tail: int, batch: int = 20,
                  limit: float = 120.0) -> None:
        """Publish at ``rate``/s until ``stop`` is set, then ``tail`` more, and return.

        The stream lasts as long as the fault does, however long a loaded machine takes
        to cause and clear it: the ``tail`` goes out after the fault cleared, so the
        router always has messages to show its recovery with."""
        deadline = time.monotonic() + limit
        exchange = await self._connect(deadline)
        start = time.monotonic()
        sent, ends = 0, None
        while ends is None or sent < ends:
            if ends is None and stop.is_set():
                ends = sent + tail
            size = batch if ends is None else min(batch, ends - sent)
            chunk = [f"{self.prefix}-{i}" for i in range(sent, sent + size)]
            while True:
                try:
                    await asyncio.wait_for(asyncio.gather(*(
                        exchange.publish(aio_pika.Message(
                            self.body, type=self.type, message_id=mid,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                            routing_key=self.type) for mid in chunk)), 10)
                    break
                except Exception:  # noqa: BLE001 -- republish what was not confirmed
                    assert time.monotonic() < deadline, "publisher could not get through"
                    self.republished += len(chunk)
                    with contextlib.suppress(Exception):
                        await exchange.channel.connection.close()
                    exchange = await self._connect(deadline)
            self.confirmed.update(chunk)
            sent += len(chunk)
            ahead = start + sent / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        with contextlib.suppress(Exception):
            await exchange.channel.connection.close()


class Drainer:
    """Empties the destination and dead-letter queues all along, counting every arrival.

    One consumer on each queue (``DRAIN_PREFETCH`` deliveries in flight: a basic.get per
    message cannot keep up with a router routing its backlog after a fault), on one node
    at a time; a new connection to the next node when the broker ends the session (a node
    killed, a quorum queue member not back yet: ``INTERNAL_ERROR ... noproc``) or when
    nothing arrived for ``IDLE`` s (a consumer a fault left without deliveries)."""

    def __init__(self, ledger: Ledger, routed_queue: str, dead_queue: str,
                 urls: Sequence[str]) -> None:
        self.ledger, self.routed_queue, self.dead_queue = ledger, routed_queue, dead_queue
        self.nodes = _Nodes(urls)
        self._stop = asyncio.Event()
        self._arrived = asyncio.Event()

    def _counter(self, into: Counter[str]) -> Callable[[Any], Awaitable[None]]:
        async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            mid = message.message_id or "?"
            # Acked after counting: a message never loses to a dropped drainer connection.
            # One the drainer counted but could not ack comes back redelivered: not a
            # duplicate of the router's (those are new publishes, never redelivered).
            if not (message.redelivered and mid in into):
                into[mid] += 1
            self._arrived.set()
            with contextlib.suppress(Exception):  # the connection went: it comes back
                await message.ack()
        return take

    async def _session(self) -> None:
        """Consume on one node until the broker ends it, nothing arrives, or ``stop``."""
        connection = await self.nodes.connect()
        ended = asyncio.Event()
        connection.close_callbacks.add(lambda *_: ended.set())
        try:
            channel = await connection.channel()
            channel.close_callbacks.add(lambda *_: ended.set())
            await channel.set_qos(prefetch_count=DRAIN_PREFETCH)
            for queue, into in ((self.routed_queue, self.ledger.routed),
                                (self.dead_queue, self.ledger.dead)):
                q = await channel.get_queue(queue, ensure=False)
                await q.consume(self._counter(into))
            while True:
                self._arrived.clear()
                waits = [asyncio.ensure_future(event.wait())
                         for event in (self._arrived, ended, self._stop)]
                await asyncio.wait(waits, timeout=IDLE, return_when=asyncio.FIRST_COMPLETED)
                for waiting in waits:
                    waiting.cancel()
                if not self._arrived.is_set():
                    return  # ended, stopped, or quiet: the next session looks again
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._session()
            except Exception:  # noqa: BLE001 -- any broker trouble: a new connection next
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.1)

    async def recover(self, cleared_at: float, recovered: Probe, limit: float = 120.0) -> None:
        """Time how long after ``cleared_at`` the router works again (``recovered``)."""
        deadline = time.monotonic() + limit
        while not await recovered():
            assert time.monotonic() < deadline, "the router did not recover"
            await asyncio.sleep(0.02)
        self.ledger.recovery = time.monotonic() - cleared_at

    async def settle(self, cleared_at: float, limit: float = 90.0) -> Ledger:
        """Wait until every id sent is accounted for, then stop draining."""
        deadline = time.monotonic() + limit
        while self.ledger.lost and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if not self.ledger.lost:
            self.ledger.settled_after = time.monotonic() - cleared_at
        await asyncio.sleep(0.5)  # late duplicates
        self._stop.set()
        return self.ledger


RATE = 400.0  # a fault row's messages a second, from before the fault until after it
TAIL = 1.0  # seconds of traffic after the fault cleared (at least 50 messages: see finish)
PREFETCH = 64
REPUBLISH_BATCH = 20  # LedgerPublisher's confirm batch: what one lost confirm can repeat
FAULT_RETRIES = """\
retry:
  - match: "*"
    attempts: 2
    backoff: {initial: 5ms, max: 20ms}
    delays: [200ms, 500ms, 1s, 1s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s]
"""
TABLE: list[tuple[str, list[str]]] = []  # every row of the session, printed at its end
STARTED: dict[str, float] = {}  # how long the session's throwaway brokers took to start


def table() -> str:
    """The fault ledger as a Markdown table (what the README carries)."""
    lines = ["| fault | in | routed | dead-lettered | duplicated | lost | recovery |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in TABLE]
    lines += [f"{what} started in {seconds:.1f} s" for what, seconds in STARTED.items()]
    return "\n".join(lines)


def confirmed_again(router: Any) -> Probe:
    """A probe: the in-process router has had 20 more copies confirmed than now."""
    registry = router.service.metrics.registry
    labels = {"route": "order-created", "result": "delivered"}
    before = registry.get_sample_value("mcp_router_copies_total", labels) or 0

    async def probe() -> bool:
        return (registry.get_sample_value("mcp_router_copies_total", labels) or 0) > before + 20

    return probe


def http_ready(port: int) -> Probe:
    """A router process answers 200 on /readyz."""
    import urllib.request  # noqa: PLC0415 -- only the process rows need it

    def get() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    async def probe() -> bool:
        return await asyncio.to_thread(get)

    return probe


@dataclass
class Row:
    """One counted stream in flight: the ledger, and the tasks publishing and draining it;
    the stream flows until ``settle`` (the fault cleared), then for its tail."""

    ledger: Ledger
    publisher: LedgerPublisher
    drainer: Drainer
    tasks: list[asyncio.Task[None]]
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def routed(self) -> int:
        return len(self.ledger.routed)

    async def flowing(self, copies: int = FLOWING, limit: float = 60.0) -> None:
        """Return once ``copies`` of the row's messages came out of the router: the stream
        runs through it, deliveries in flight, and the fault may come."""
        deadline = time.monotonic() + limit
        while self.routed() < copies:
            assert time.monotonic() < deadline, "the stream does not get through the router"
            await asyncio.sleep(0.02)

    async def settle(self, cleared_at: float, recovered: Probe, also_sent: Sequence[str] = (),
                     limit: float = 90.0) -> Ledger:
        """End the stream (its tail still goes out), time the recovery (until
        ``recovered``), wait for the publisher, account for every id sent (``also_sent``
        too) within ``limit`` s, print the ledger."""
        self.stop.set()
        await self.drainer.recover(cleared_at, recovered)
        await self.tasks[0]
        self.ledger.sent = self.publisher.confirmed | set(also_sent)
        ledger = await self.drainer.settle(cleared_at, limit=limit)
        await self.tasks[1]
        print(ledger.report())
        return ledger

    async def finish(self, cleared_at: float, kills: int = 0,
                     routing: Probe | None = None, also_sent: Sequence[str] = ()) -> Ledger:
        """Settle (``routing``: by default, routed copies arriving again), record the row
        in the session's table, check nothing was lost and duplicates stay bounded."""
        at_clear = self.routed()

        async def arriving() -> bool:  # the tail alone brings 50 more
            return self.routed() >= at_clear + 50

        ledger = await self.settle(cleared_at, routing or arriving, also_sent, limit=120)
        TABLE.append((ledger.name, ledger.cells()))
        assert not ledger.lost, f"{len(ledger.lost)} lost: {sorted(ledger.lost)[:5]}"
        bound = max(kills, 1) * PREFETCH + self.publisher.republished + REPUBLISH_BATCH
        assert ledger.duplicated <= bound, ledger.report()
        return ledger


def start_row(config_dir: Any, name: str, nodes: Sequence[str], rate: float,
              publish_limit: float = 120.0) -> Row:
    """Publish counted OrderCreated messages at ``rate`` to ``config_dir``'s ingress on
    ``nodes`` until the row settles (and ``TAIL`` s more), and drain its billing and
    dead-letter queues, as tasks."""
    from tests.integration.conftest import order_created  # noqa: PLC0415 -- cycle

    ledger = Ledger(name)
    publisher = LedgerPublisher(config_dir.ingress, config_dir.prefix,
                                json.dumps(order_created()).encode(), "OrderCreated",
                                list(nodes))
    drainer = Drainer(ledger, config_dir.name("billing"), config_dir.dead_queue, list(nodes))
    stop = asyncio.Event()
    tail = max(int(rate * TAIL), 50)
    tasks = [asyncio.create_task(publisher.run(rate, stop, tail, limit=publish_limit)),
             asyncio.create_task(drainer.run())]
    return Row(ledger, publisher, drainer, tasks, stop)


async def stop_rows(rows: Sequence[Row]) -> None:
    """Cancel what the rows still run (a test that failed midway leaves them going)."""
    for row in rows:
        for task in row.tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


@pytest.fixture
async def ledger_row(config_dir: Any, amqp_url: str) -> AsyncIterator[
        Callable[[str], Awaitable[Row]]]:
    """Start a row's counted stream on ``amqp_url`` with fault-sized retries."""
    from tests.integration.conftest import apply  # noqa: PLC0415 -- cycle

    (config_dir.path / "policies" / "retry.yaml").write_text(FAULT_RETRIES)
    await apply(config_dir, amqp_url)
    rows: list[Row] = []

    async def start(name: str) -> Row:
        rows.append(start_row(config_dir, name, amqp_url.split(","), RATE, publish_limit=180))
        return rows[-1]

    yield start
    await stop_rows(rows)
