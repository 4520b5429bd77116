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
for every row (or ``--rate``).  Latency is taken in ``--rounds`` rounds of
``--seconds`` each (after a one-second warm-up), the rows taking turns and
the order turning each round, so a slow spell of the machine (on two cores,
the broker, the load generator and the row share them) falls on every row
alike rather than on whichever ran then.  p50 and p99.9 pool every round's
messages; p99 is the median round's (one stall of the broker, such as its
write-ahead log rolling over, makes one round's p99 a second and the row's
note says so); "p99 +ms" is the row's p99 less the passthrough's *in the same
round*, the median of the rounds and their range.  A row whose load
generator fell behind its schedule says so.  ``bench/stages.py`` prints the
cost of each stage per message; ``make bench`` runs both.

    python -m bench.throughput [--messages 20000] [--rate 0] [--seconds 4] [--rounds 5]
                               [--no-tracing] [--no-workers]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os

import aio_pika

from bench.entities import PREFETCH, URL, fill, progress, queue_depth
from bench.latency import HALF_LOAD, gap, half, spread
from bench.loadgen import WARM_UP
from bench.otlp_sink import Sink
from bench.passthrough import passthrough
from bench.rivals import faststream_available, faststream_starter
from bench.rows import (
    NOT_EXPORTED,
    Row,
    check_not_dead_lettered,
    counted,
    discard,
    drain,
    plain_row,
    router_row,
    sustained_rate,
    timed,
)
from bench.scaling import ScalingResult, limit, run_workers, saturation
from router.observe.telemetry import TelemetrySettings

FASTSTREAM = "FastStream, validate (pydantic) + republish"


async def rows_to_run(connection: aio_pika.abc.AbstractConnection, args: argparse.Namespace,
                      sink: Sink) -> list[Row]:
    rows = [await plain_row(connection, "aio-pika passthrough", "pass",
                            lambda n: lambda: passthrough(URL, n)),
            await router_row("mcp-router, tracing not exported", NOT_EXPORTED)]
    if not args.no_tracing:
        # Not parent-based: every bench message starts its own sampled trace upstream.
        rows += [
            await router_row("mcp-router, every span exported, OTLP/HTTP", TelemetrySettings(
                exporter="otlp", endpoint=sink.http_url, sampler="always_on")),
            await router_row("mcp-router, every span exported, OTLP/gRPC", TelemetrySettings(
                exporter="otlp", endpoint=sink.grpc_endpoint, protocol="grpc",
                sampler="always_on"))]
    if faststream_available():
        rows.append(await plain_row(
            connection, FASTSTREAM, "faststream",
            lambda n: faststream_starter(URL, n.ingress_q, n.dest, PREFETCH)))
    return rows


def turn(rows: list[Row], n: int) -> list[Row]:
    """The rows in round ``n``'s order: each round begins one row further on."""
    return rows[n % len(rows):] + rows[:n % len(rows)]


def ratios(row: Row, base: Row) -> tuple[float, float, float]:
    """Round by round, the row's drain over the passthrough's: median, lowest, highest."""
    return spread([a / b for a, b in zip(row.rates, base.rates, strict=False)])


async def measure(connection: aio_pika.abc.AbstractConnection, args: argparse.Namespace,
                  rows: list[Row], sink: Sink) -> int:
    """Every row's drains, then the latency rounds at the rate found, the rows' order
    turning each round so no row always follows the same one.  Answers the rate."""
    for n in range(args.drains):
        for row in turn(rows, n):
            progress(f"drain {n + 1}/{args.drains}")
            await counted(row, sink, functools.partial(drain, connection, row, args.messages))
    rate = args.rate or half(await sustained_rate(rows[0], args.seconds))
    for n in range(args.rounds):
        for row in turn(rows, n):
            progress(f"round {n + 1}/{args.rounds}: {row.name} at {rate} msg/s")
            await counted(row, sink, functools.partial(timed, connection, row, rate, args.seconds))
    for row in rows:
        await check_not_dead_lettered(connection, row)
    return rate


async def main(args: argparse.Namespace) -> None:
    connection = await aio_pika.connect(URL)
    sink = Sink()
    rows: list[Row] = []
    try:
        rows = await rows_to_run(connection, args, sink)
        rate = await measure(connection, args, rows, sink)
    finally:
        sink.close()
        for row in rows:
            await discard(connection, row)
    scaling = [] if args.no_workers else \
        [await run_fleet(connection, args, n) for n in (1, 2)]
    await connection.close()
    report(args, rows, rate, scaling)


def latency_method(args: argparse.Namespace, base: Row, rate: int) -> str:
    """What the latency columns are, and what rate they were taken at."""
    if base.sustained is None:
        at = f"at {args.rate} msg/s (--rate)"
    else:
        at = (f"at {rate} msg/s, {HALF_LOAD}: {base.sustained:.0f} msg/s; "
              f"its backlog drain, {base.rate:.0f} msgs/s, is no end-to-end rate")
    return (f"latency: publish -> destination consumer, {args.rounds} rounds of {args.seconds:g} s "
            f"per row after a {WARM_UP:g} s warm-up each, the rows taking turns; p50 and p99.9 "
            f"pooled, p99 the median round's; {at}; "
            "p99 +ms: the row's p99 less the passthrough's in the same round, median "
            "(lowest..highest) of the rounds")


def report(args: argparse.Namespace, rows: list[Row], rate: int,
           scaling: list[ScalingResult]) -> None:
    base, base_latency = rows[0], rows[0].latency(rate)
    print(f"\n{args.messages} messages backlog, drained {args.drains} times per row, the rows "
          f"taking turns; prefetch {PREFETCH}; the router validates the schema, evaluates a CEL "
          "route and propagates trace context in every run; msgs/s: the median drain; ratio: "
          "the row's drain over the passthrough's in the same round, median (lowest..highest)")
    print(latency_method(args, base, rate))
    print(f"{'':44} {'msgs/s':>7} {'ratio':>19} {'p50 ms':>7} {'p99 ms':>7} {'p99.9':>7} "
          f"{'p99 +ms':>21}")
    for row in rows:
        lat = row.latency(rate)
        mid, low, high = gap(lat, base_latency)
        r_mid, r_low, r_high = ratios(row, base)
        spans = (f"; spans exported {row.spans}/{row.due}" if row.exported else "")
        print(f"{row.name:44} {row.rate:7.0f} {r_mid:5.2f}x ({r_low:.2f}..{r_high:.2f}) "
              f"{lat.p50:7.2f} {lat.round_p99:7.2f} {lat.p999:7.2f} {mid:+7.2f} "
              f"({low:+.1f}..{high:+.1f})  {lat.note()}{spans}")
    rival = next((r for r in rows if r.name == FASTSTREAM), None)
    if rival is not None:
        f_mid, f_low, f_high = ratios(rows[1], rival)
        print(f"ratio router (not exported) / FastStream, round by round: {f_mid:.2f}x "
              f"({f_low:.2f}..{f_high:.2f})")
    for s in scaling:
        print(f"mcp-router run --workers {s.workers}: {s.rate:7.0f} msgs/s steady "
              f"({s.rate / base.rate:.2f}x passthrough); {limit(s)}")
    if len(scaling) == 2:
        print(f"scaling 1 -> 2 workers: {scaling[1].rate / scaling[0].rate:.2f}x "
              f"on {os.cpu_count()} cores; {saturation(scaling)}")


async def run_fleet(connection: aio_pika.abc.AbstractConnection, args: argparse.Namespace,
                    workers: int) -> ScalingResult:
    """``mcp-router run --workers N`` on a fresh equivalent configuration."""
    # declared by starting it once, so the backlog has a queue
    row = await router_row(f"--workers {workers}", NOT_EXPORTED, tag=f"workers{workers}")
    assert row.workdir is not None  # noqa: S101 -- router_row made one
    try:
        await fill(connection, row.names.ingress, args.messages)
        progress(f"mcp-router run --workers {workers}: draining {args.messages} messages")
        return await run_workers(URL, row.workdir, workers, args.messages,
                                 lambda: queue_depth(connection, row.names.dest_q))
    finally:
        await discard(connection, row)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=0,
                        help="latency at this rate (default: half load, see bench/latency.py)")
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="each latency round (and the closed loop), after a 1 s warm-up")
    parser.add_argument("--drains", type=int, default=3,
                        help="backlog drains per row, the rows taking turns")
    parser.add_argument("--rounds", type=int, default=5,
                        help="latency rounds per row, the rows taking turns")
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
