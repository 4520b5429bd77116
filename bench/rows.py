"""The benchmark's rows: what each starts, on which entities, and its measures.

A ``Row`` is one line of ``bench/throughput.py``'s table: a starter (the
passthrough, a ``RouterService`` in this process, FastStream), the entities
it consumes and publishes to, and what was measured on it: the backlog drain,
the latency rounds (``bench/latency.py``), the spans it exported.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika

from bench.entities import (
    PREFETCH,
    URL,
    Names,
    cleanup,
    config_dir,
    declare_plain,
    fill,
    progress,
    purge,
    queue_depth,
    wait_drained,
)
from bench.latency import Latency, Round, paced, sustained
from bench.otlp_sink import Sink
from bench.passthrough import Stop
from bench.scaling import cpu_seconds, listener_pid, process_tree
from router.config.configuration import load_config
from router.observe.journal import DEFAULT_SIZE, Journal
from router.observe.telemetry import Telemetry, TelemetrySettings
from router.runtime.service import RouterService, Settings

__all__ = ["NOT_EXPORTED", "Row", "check_not_dead_lettered", "counted", "discard", "drain",
           "plain_row", "router_row", "router_starter", "run_router", "sustained_rate", "timed"]

NOT_EXPORTED = TelemetrySettings()
SETTLED_CORES = 0.25
SETTLE_MOST = 10.0


@dataclass
class Row:
    """One row of the table: what it starts, its entities, and what was measured."""

    name: str
    names: Names
    start: Callable[[], Awaitable[Stop]]
    workdir: Path | None = None  # a router's configuration (deleted after)
    exported: bool = False  # spans go to the sink: count them
    rates: list[float] = field(default_factory=list)  # msgs/s draining the backlog, per round
    rounds: list[Round] = field(default_factory=list)
    spans: int = 0  # exported, as the sink counted them
    due: int = 0  # spans due: process + publish per message
    sustained: float | None = None  # the closed loop's msg/s: measured for the passthrough only

    @property
    def rate(self) -> float:
        """The median drain."""
        return statistics.median(self.rates) if self.rates else 0.0

    def latency(self, target: float) -> Latency:
        return Latency.pooled(target, self.rounds)


async def counted(row: Row, sink: Sink, run: Callable[[], Awaitable[int]]) -> None:
    """``run`` (answering how many messages it sent); the spans it exported are counted."""
    before = sink.stats()["spans"] if row.exported else 0
    messages = await run()
    if row.exported:
        row.spans += sink.stats()["spans"] - before
        row.due += 2 * messages


def _ours_busy_seconds(broker: int | None) -> float:
    """CPU seconds of the broker and of this process with its children (the sink, an
    exporter): the parts of the run a row's start-up or the previous row leaves busy."""
    pids = process_tree(os.getpid()) + ([broker] if broker is not None else [])
    return sum(cpu_seconds(pid) for pid in pids)


@functools.cache
def _broker() -> int | None:
    """The broker's process, when it runs here (looked up once: a scan of /proc)."""
    return listener_pid(urlsplit(URL).port or 5672)


async def settle(idle_below: float = SETTLED_CORES, most: float = SETTLE_MOST) -> float:
    """Until the broker and this benchmark's processes are nearly idle (under
    ``idle_below`` cores over half a second) or ``most`` seconds passed; answers the
    seconds waited.  A drain leaves the broker busy for a while (the quorum queues'
    logs written out, the purged messages released), and a router's start-up (its
    exporter process importing gRPC) takes a second of CPU: a row measured then would
    pay for them.  Other processes on the machine are not waited for."""
    broker = _broker()
    began = time.monotonic()
    while time.monotonic() - began < most:
        before = _ours_busy_seconds(broker)
        await asyncio.sleep(0.5)
        if (_ours_busy_seconds(broker) - before) / 0.5 < idle_below:
            break
    return time.monotonic() - began


async def drain(connection: aio_pika.abc.AbstractConnection, row: Row, count: int) -> int:
    """Backlog throughput: ``count`` messages published, then the row started."""
    await fill(connection, row.names.ingress, count)
    waited = await settle()
    progress(f"{row.name}: draining {count} messages (settled in {waited:.1f} s)")
    began = time.perf_counter()
    stop = await row.start()
    try:
        await wait_drained(connection, row.names, count)
        row.rates.append(count / (time.perf_counter() - began))
    finally:
        await stop()
    await purge(connection, row.names.dest_q)
    progress(f"{row.rates[-1]:.0f} msgs/s")
    return count


async def timed(connection: aio_pika.abc.AbstractConnection, row: Row, rate: int,
                seconds: float) -> int:
    """One latency round of ``row`` at ``rate``, once its start-up (and whatever the
    previous row left) has settled."""
    stop = await row.start()
    try:
        await settle()
        result = await paced(row.names.ingress, row.names.dest_q, rate, seconds)
    finally:
        await stop()
    await purge(connection, row.names.dest_q)
    row.rounds.append(result)
    return result.sent


async def sustained_rate(row: Row, seconds: float) -> float:
    stop = await row.start()
    try:
        progress("closed loop for the sustained maximum")
        row.sustained = await sustained(row.names.ingress, row.names.dest_q, seconds)
    finally:
        await stop()
    progress(f"{row.sustained:.0f} msg/s sustained end to end")
    return row.sustained


def router_starter(url: str, directory: Path, telemetry: TelemetrySettings = NOT_EXPORTED,
                   journal_size: int = DEFAULT_SIZE) -> Callable[[], Awaitable[Stop]]:
    async def start() -> Stop:
        tracing = Telemetry.start(telemetry)
        service = RouterService(load_config(directory), Settings(url, prefetch=PREFETCH),
                                tracer=tracing.tracer, journal=Journal(journal_size))
        stop_event = asyncio.Event()
        task = asyncio.create_task(service.run(stop_event))
        while not service.ready:
            await asyncio.sleep(0.01)

        async def stop() -> None:
            stop_event.set()
            await task
            await asyncio.to_thread(tracing.shutdown)

        return stop

    return start


async def plain_row(connection: aio_pika.abc.AbstractConnection, name: str, tag: str,
                    starter: Callable[[Names], Callable[[], Awaitable[Stop]]]) -> Row:
    """A row on the passthrough's entities (declared here)."""
    names = Names(tag)
    channel = await connection.channel()
    await declare_plain(channel, names)
    await channel.close()
    return Row(name, names, starter(names))


async def router_row(name: str, telemetry: TelemetrySettings,
                     journal_size: int = DEFAULT_SIZE, tag: str = "router") -> Row:
    """A router on a fresh equivalent configuration, started once to declare it."""
    names = Names(tag)
    workdir = config_dir(names)
    row = Row(name, names, router_starter(URL, workdir, telemetry, journal_size), workdir,
              exported=telemetry.enabled)
    await (await row.start())()
    return row


async def run_router(connection: aio_pika.abc.AbstractConnection, args: argparse.Namespace,
                     label: str, telemetry: TelemetrySettings, rate: int,
                     journal_size: int = DEFAULT_SIZE) -> Row:
    """One router row on its own: the drain, one latency round, its entities deleted after."""
    row = await router_row(label, telemetry, journal_size)
    try:
        await drain(connection, row, args.messages)
        await timed(connection, row, rate, args.seconds)
        await check_not_dead_lettered(connection, row)
        return row
    finally:
        await discard(connection, row)


async def check_not_dead_lettered(connection: aio_pika.abc.AbstractConnection,
                                  row: Row) -> None:
    """A router row whose bench messages were dead-lettered measured something else."""
    if row.workdir is not None and await queue_depth(connection, row.names.dlq):
        raise SystemExit(f"{row.name}: bench messages were dead-lettered; the run is invalid")


async def discard(connection: aio_pika.abc.AbstractConnection, row: Row) -> None:
    """Delete the row's entities, and its configuration directory if it has one."""
    await cleanup(connection, row.names)
    if row.workdir is not None:
        shutil.rmtree(row.workdir)
