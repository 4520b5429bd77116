"""Router throughput and latency against a hand-written aio-pika passthrough.

One process, one run, the same broker and the same message:

1. **passthrough** (``bench/passthrough.py``): consume from a quorum queue,
   publish each message to a destination exchange with confirms and
   ``mandatory``, then ack it: what a team would write by hand with aio-pika.
2. **mcp-router**: ``RouterService`` on an equivalent configuration, with
   JSON Schema validation, a CEL ``when`` route and trace propagation on;
   spans not exported (no ``OTEL_*`` configuration), then every span exported
   (100 % sampled) over OTLP/HTTP and over OTLP/gRPC to a real OTLP receiver
   in a process of its own (``bench/otlp_sink.py``), which decodes and counts
   every span: the row says how many arrived of how many were due.
3. **FastStream** validating (pydantic) and republishing, when installed
   (``bench/rivals.py``).
4. **mcp-router run --workers 1 and 2**, the CLI as deployed, with the CPU of
   the routers, the broker and the machine meanwhile, and which of them is the
   limit (``bench/scaling.py``).

For each: *throughput* draining a pre-filled backlog (msgs/s), then *latency*
end to end (publish to the destination consumer, the load from a process of
its own) at **half load**: half the passthrough's *maximum sustained
end-to-end rate*, measured first in a closed loop with the load generator
running (``bench/latency.py`` says why not half the drain rate), the same rate
for every row (or ``--rate``).  p50/p99/p99.9 after a one-second warm-up;
a row whose load generator fell behind its schedule says so.  Prints a table
and each run's ratio to the passthrough.  ``bench/stages.py`` prints the cost
of each stage per message; ``make bench`` runs both.

    python -m bench.throughput [--messages 20000] [--rate 0] [--seconds 5] [--no-tracing]
                               [--no-workers]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

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
from bench.latency import HALF_LOAD, Latency, half, paced, sustained
from bench.loadgen import WARM_UP
from bench.otlp_sink import Sink
from bench.passthrough import Stop, passthrough
from bench.rivals import faststream_available, faststream_starter
from bench.scaling import ScalingResult, limit, run_workers, saturation
from router.config.configuration import load_config
from router.observe.journal import DEFAULT_SIZE, Journal
from router.observe.telemetry import Telemetry, TelemetrySettings
from router.runtime.service import RouterService, Settings

NOT_EXPORTED = TelemetrySettings()


@dataclass
class Result:
    name: str
    rate: float  # msgs/s draining the backlog
    latency: Latency
    sustained: float | None = None  # the closed loop's msg/s: measured for the passthrough only
    note: str = ""


async def measure(connection: aio_pika.abc.AbstractConnection, n: Names, count: int,
                  rate: int | None, seconds: float,
                  start: Callable[[], Awaitable[Stop]]) -> Result:
    """Backlog throughput, then latency at ``rate``; None: at half load, measuring first
    the sustained end-to-end maximum of what ``start`` starts (the passthrough)."""
    await fill(connection, n.ingress, count)
    progress(f"draining {count} messages")
    began = time.perf_counter()
    stop = await start()
    try:
        await wait_drained(connection, n, count)
        throughput = count / (time.perf_counter() - began)
        await purge(connection, n.dest_q)
        most = None
        if rate is None:
            progress(f"{throughput:.0f} msgs/s; closed loop for the sustained maximum")
            most = await sustained(n.ingress, n.dest_q, seconds)
            rate = half(most)
            progress(f"{most:.0f} msg/s sustained end to end")
        else:
            progress(f"{throughput:.0f} msgs/s")
        progress(f"latency at {rate} msg/s")
        latency = await paced(n.ingress, n.dest_q, rate, seconds)
    finally:
        await stop()
    return Result("", throughput, latency, most)


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


async def run_passthrough(connection: aio_pika.abc.AbstractConnection,
                          args: argparse.Namespace) -> Result:
    names = Names("pass")
    channel = await connection.channel()
    await declare_plain(channel, names)
    await channel.close()
    try:
        r = await measure(connection, names, args.messages, args.rate or None, args.seconds,
                          lambda: passthrough(URL, names))
    finally:
        await cleanup(connection, names)
    r.name = "aio-pika passthrough"
    return r


async def main(args: argparse.Namespace) -> None:
    connection = await aio_pika.connect(URL)
    results = [await run_passthrough(connection, args)]
    rate = args.rate or half(results[0].sustained or 0)  # the same rate for every row
    sink = Sink()
    variants = [("mcp-router, tracing not exported", NOT_EXPORTED)]
    if not args.no_tracing:
        # Not parent-based: every bench message starts its own sampled trace upstream.
        variants += [
            ("mcp-router, every span exported, OTLP/HTTP",
             TelemetrySettings(exporter="otlp", endpoint=sink.http_url, sampler="always_on")),
            ("mcp-router, every span exported, OTLP/gRPC",
             TelemetrySettings(exporter="otlp", endpoint=sink.grpc_endpoint, protocol="grpc",
                               sampler="always_on"))]
    try:
        for label, telemetry in variants:
            before = sink.stats()["spans"]
            r = await run_router(connection, args, label, telemetry, rate)
            if telemetry.enabled:
                stats = sink.stats()
                due = 2 * (args.messages + r.latency.sent)  # process + publish per message
                r.note += f"; spans exported {stats['spans'] - before}/{due}" + \
                    (f", {stats['bad']} malformed" if stats["bad"] else "")
            results.append(r)
    finally:
        sink.close()
    if faststream_available():
        results.append(await run_faststream(connection, args, rate))
    scaling = [] if args.no_workers else \
        [await run_fleet(connection, args, n) for n in (1, 2)]
    await connection.close()
    report(args, results, scaling)


def latency_method(args: argparse.Namespace, base: Result) -> str:
    """What the latency columns are, and what rate they were taken at."""
    if base.sustained is None:
        at = f"at {args.rate} msg/s (--rate)"
    else:
        at = (f"at {half(base.sustained)} msg/s, {HALF_LOAD}: {base.sustained:.0f} msg/s; "
              f"its backlog drain, {base.rate:.0f} msgs/s, is no end-to-end rate")
    return (f"latency: publish -> destination consumer, {args.seconds:g} s after a "
            f"{WARM_UP:g} s warm-up, {at}")


def report(args: argparse.Namespace, results: list[Result],
           scaling: list[ScalingResult]) -> None:
    base = results[0]
    print(f"\n{args.messages} messages backlog, prefetch {PREFETCH}; the router validates the "
          "schema, evaluates a CEL route and propagates trace context in every run")
    print(latency_method(args, base))
    print(f"{'':44} {'msgs/s':>9} {'ratio':>7} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
          f"{'p99 +ms':>8}")
    for r in results:
        lat = r.latency
        print(f"{r.name:44} {r.rate:9.0f} {r.rate / base.rate:6.2f}x {lat.p50:8.2f} "
              f"{lat.p99:8.2f} {lat.p999:9.2f} {lat.p99 - base.latency.p99:+8.2f}  "
              f"{lat.note()}{r.note}")
    rival = next((r for r in results if r.name.startswith("FastStream")), None)
    if rival is not None:
        print(f"ratio router (not exported) / FastStream: {results[1].rate / rival.rate:.2f}x")
    for s in scaling:
        print(f"mcp-router run --workers {s.workers}: {s.rate:7.0f} msgs/s steady "
              f"({s.rate / base.rate:.2f}x passthrough); {limit(s)}")
    if len(scaling) == 2:
        print(f"scaling 1 -> 2 workers: {scaling[1].rate / scaling[0].rate:.2f}x "
              f"on {os.cpu_count()} cores; {saturation(scaling)}")


async def run_faststream(connection: aio_pika.abc.AbstractConnection,
                         args: argparse.Namespace, rate: int) -> Result:
    names = Names("faststream")
    channel = await connection.channel()
    await declare_plain(channel, names)
    await channel.close()
    try:
        r = await measure(connection, names, args.messages, rate, args.seconds,
                          faststream_starter(URL, names.ingress_q, names.dest, PREFETCH))
    finally:
        await cleanup(connection, names)
    r.name = "FastStream, validate (pydantic) + republish"
    return r


async def run_fleet(connection: aio_pika.abc.AbstractConnection, args: argparse.Namespace,
                    workers: int) -> ScalingResult:
    """``mcp-router run --workers N`` on a fresh equivalent configuration."""
    names = Names(f"workers{workers}")
    workdir = config_dir(names)
    stop = await router_starter(URL, workdir)()  # declare, so the backlog has a queue
    await stop()
    try:
        await fill(connection, names.ingress, args.messages)
        progress(f"mcp-router run --workers {workers}: draining {args.messages} messages")
        return await run_workers(URL, workdir, workers, args.messages,
                                 lambda: queue_depth(connection, names.dest_q))
    finally:
        await cleanup(connection, names)
        shutil.rmtree(workdir)


async def run_router(connection: aio_pika.abc.AbstractConnection, args: argparse.Namespace,
                     label: str, telemetry: TelemetrySettings, rate: int,
                     journal_size: int = DEFAULT_SIZE) -> Result:
    """One router run on a fresh equivalent configuration."""
    names = Names("router")
    workdir = config_dir(names)
    # declare once so the backlog can be published before the router starts
    starter = router_starter(URL, workdir, telemetry, journal_size)
    stop = await starter()
    await stop()
    try:
        r = await measure(connection, names, args.messages, rate, args.seconds, starter)
        r.name = label
        if await queue_depth(connection, names.dlq):
            raise SystemExit("bench messages were dead-lettered: the router run is invalid")
        return r
    finally:
        await cleanup(connection, names)
        shutil.rmtree(workdir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=0,
                        help="latency at this rate (default: half load, see bench/latency.py)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="latency measured (and the closed loop) after a 1 s warm-up")
    parser.add_argument("--no-tracing", action="store_true",
                        help="skip the two runs that export spans")
    parser.add_argument("--no-workers", action="store_true",
                        help="skip the --workers 1 and 2 runs")
    arguments = parser.parse_args()
    try:
        import uvloop
        uvloop.run(main(arguments))
    except ImportError:
        asyncio.run(main(arguments))
