"""Router throughput and latency against a hand-written aio-pika passthrough.

One process, one run, the same broker and the same message:

1. **passthrough**: consume from a quorum queue, publish each message to a
   destination exchange with confirms and ``mandatory``, then ack it: what a
   team would write by hand with aio-pika (prefetch, one task per message).
2. **mcp-router**: ``RouterService`` on an equivalent configuration, with
   JSON Schema validation, a CEL ``when`` route and trace propagation on;
   spans not exported (no ``OTEL_*`` configuration), then every span exported
   (100 % sampled) over OTLP/HTTP and over OTLP/gRPC to a real OTLP receiver
   in a process of its own (``bench/otlp_sink.py``), which decodes and counts
   every span: the row says how many arrived of how many were due.
3. **FastStream** validating (pydantic) and republishing, when installed
   (``bench/rivals.py``).
4. **mcp-router run --workers 1 and 2**, the CLI as deployed, with the
   broker's CPU meanwhile (``bench/scaling.py``).

For each: *throughput* draining a pre-filled backlog (msgs/s), then
*latency* end to end (publish to the destination consumer) at half the
passthrough's measured maximum (or ``--rate``), p50/p99.  Prints a table and
each run's ratio to the passthrough.  ``bench/stages.py`` prints the cost of
each stage per message; ``make bench`` runs both.

    python -m bench.throughput [--messages 20000] [--rate 0] [--seconds 5] [--no-tracing]
                               [--no-workers]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import yaml

from bench.otlp_sink import Sink
from bench.rivals import faststream_available, faststream_starter
from bench.scaling import ScalingResult, run_workers
from router.config.configuration import load_config
from router.observe.journal import DEFAULT_SIZE, Journal
from router.observe.telemetry import Telemetry, TelemetrySettings
from router.runtime.service import RouterService, Settings

ROOT = Path(__file__).resolve().parents[1]
URL = os.environ.get("MCP_AMQP_URL", "amqp://guest:guest@localhost:5672/")
PREFETCH = 256
BODY = json.dumps({
    "order_id": "6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11", "customer_id": "c-42",
    "customer_email": "ada@example.com", "total_amount": 129.9, "currency": "EUR",
    "created_at": "2026-11-24T10:00:00Z",
    "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": 49.95},
              {"sku": "SKU-2", "quantity": 1, "unit_price": 30.0}],
}).encode()


@dataclass
class Result:
    name: str
    rate: float
    p50: float
    p99: float
    sent: int = 0  # messages published in the latency phase
    note: str = ""


class Names:
    def __init__(self, tag: str) -> None:
        p = f"bench-{tag}-{uuid.uuid4().hex[:6]}"
        self.ingress, self.ingress_q = f"{p}.ingress", f"{p}.ingress.q"
        self.dlx, self.dlq = f"{p}.dlx", f"{p}.dead"
        self.dest, self.dest_q = f"{p}.orders", f"{p}.billing"

    def topology(self) -> dict[str, object]:
        return {
            "ingress": {"exchange": self.ingress, "queue": self.ingress_q},
            "dead_letter": {"exchange": self.dlx, "queue": self.dlq},
            "exchanges": [{"name": self.dest, "type": "topic"}],
            "queues": [{"name": self.dest_q, "type": "quorum"}],
            "bindings": [{"exchange": self.dest, "queue": self.dest_q, "routing_key": "order.#"}],
            "routes": [{"name": "orders", "message_type": "OrderCreated",
                        "when": "message.total_amount > 100.0",  # the SPEC's content route
                        "to": [{"exchange": self.dest, "routing_key": "order.created"}]}],
        }


async def declare_plain(channel: aio_pika.abc.AbstractChannel, n: Names) -> None:
    """The passthrough's entities: the same kinds as the router's."""
    ingress = await channel.declare_exchange(n.ingress, "topic", durable=True)
    queue = await channel.declare_queue(n.ingress_q, durable=True,
                                        arguments={"x-queue-type": "quorum"})
    await queue.bind(ingress, "#")
    dest = await channel.declare_exchange(n.dest, "topic", durable=True)
    dest_q = await channel.declare_queue(n.dest_q, durable=True,
                                         arguments={"x-queue-type": "quorum"})
    await dest_q.bind(dest, "order.#")


async def fill(connection: aio_pika.abc.AbstractConnection, exchange: str, count: int,
               stamp: bool = False) -> None:
    channel = await connection.channel(publisher_confirms=True)
    ex = await channel.get_exchange(exchange, ensure=False)
    for start in range(0, count, 1000):
        await asyncio.gather(*(ex.publish(message(stamp), routing_key="OrderCreated")
                               for _ in range(start, min(start + 1000, count))))
    await channel.close()


def message(stamp: bool) -> aio_pika.Message:
    # A trace of its own per message, as if each came from a separate request upstream.
    headers: dict[str, object] = {
        "traceparent": f"00-{random.getrandbits(128):032x}-{random.getrandbits(64):016x}-01"}
    if stamp:
        headers["x-bench-sent"] = time.time_ns()
    return aio_pika.Message(BODY, type="OrderCreated", content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            message_id=str(uuid.uuid4()), headers=headers)  # type: ignore[arg-type]


async def queue_depth(connection: aio_pika.abc.AbstractConnection, name: str) -> int:
    channel = await connection.channel()
    q = await channel.declare_queue(name, passive=True)
    await channel.close()
    return int(q.declaration_result.message_count or 0)


async def wait_drained(connection: aio_pika.abc.AbstractConnection, n: Names, count: int,
                       stall: float = 60.0) -> None:
    """Until ``count`` messages reached the destination; fails after ``stall`` s without one."""
    seen, since = -1, time.monotonic()
    while (depth := await queue_depth(connection, n.dest_q)) < count:
        if depth != seen:
            seen, since = depth, time.monotonic()
        elif time.monotonic() - since > stall:
            raise SystemExit(f"{n.dest_q}: stuck at {depth} of {count} messages")
        await asyncio.sleep(0.05)


def progress(text: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


async def measure(connection: aio_pika.abc.AbstractConnection, n: Names, count: int,
                  rate: int | None, seconds: float,
                  start: Callable[[], Awaitable[Callable[[], Awaitable[None]]]]) -> Result:
    """Backlog throughput, then latency at a fixed rate (None: half the throughput just
    measured), for one consumer implementation."""
    await fill(connection, n.ingress, count)
    progress(f"draining {count} messages")
    began = time.perf_counter()
    stop = await start()
    await wait_drained(connection, n, count)
    throughput = count / (time.perf_counter() - began)
    rate = rate or max(int(throughput / 2), 1)
    progress(f"{throughput:.0f} msgs/s; latency at {rate} msg/s")
    channel = await connection.channel()
    dest_q = await channel.get_queue(n.dest_q, ensure=False)
    await dest_q.purge()
    await channel.close()
    # The load from a process of its own: here it would share the router's core.
    loadgen = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.loadgen", n.ingress, n.dest_q, str(rate),
        str(seconds), stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    out, _ = await loadgen.communicate()
    await stop()
    latency = json.loads(out.decode().strip().splitlines()[-1])
    lost = "" if latency["received"] == latency["sent"] else \
        f"; only {latency['received']} of {latency['sent']} timed"
    return Result("", throughput, latency["p50"], latency["p99"], latency["sent"],
                  f"latency at {rate} msg/s{lost}")


async def passthrough(url: str, n: Names) -> Callable[[], Awaitable[None]]:
    """The hand-written baseline: consume -> publish with confirms -> ack."""
    consume_conn = await aio_pika.connect(url)
    publish_conn = await aio_pika.connect(url)
    channel = await consume_conn.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    out = await publish_conn.channel(publisher_confirms=True, on_return_raises=True)
    dest = await out.get_exchange(n.dest, ensure=False)
    queue = await channel.get_queue(n.ingress_q, ensure=False)

    async def handle(m: aio_pika.abc.AbstractIncomingMessage) -> None:
        await dest.publish(aio_pika.Message(m.body, headers=m.headers, type=m.type,
                                            message_id=m.message_id,
                                            content_type=m.content_type,
                                            delivery_mode=m.delivery_mode),
                           routing_key="order.created", mandatory=True)
        await m.ack()

    tag = await queue.consume(handle)

    async def stop() -> None:
        await queue.cancel(tag)
        await consume_conn.close()
        await publish_conn.close()

    return stop


Stop = Callable[[], Awaitable[None]]


NOT_EXPORTED = TelemetrySettings()


def router_starter(url: str, directory: Path, telemetry: TelemetrySettings = NOT_EXPORTED,
                   journal_size: int = DEFAULT_SIZE) -> Callable[[], Awaitable[Stop]]:
    async def start() -> Callable[[], Awaitable[None]]:
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


async def cleanup(connection: aio_pika.abc.AbstractConnection, n: Names) -> None:
    channel = await connection.channel()
    # the router's retry tier (router.config.topology.retry_queue) is declared beside the ingress
    retries = [f"{n.ingress_q}.retry.{ms}ms" for ms in (50, 100, 1000, 10_000, 60_000)]
    for q in (n.ingress_q, n.dest_q, n.dlq, *retries):
        await channel.queue_delete(q)  # a queue that does not exist is no error
    for e in (n.ingress, n.dest, n.dlx):
        await channel.exchange_delete(e)
    await channel.close()


async def main(args: argparse.Namespace) -> None:
    connection = await aio_pika.connect(URL)
    results: list[Result] = []
    base = Names("pass")
    channel = await connection.channel()
    await declare_plain(channel, base)
    await channel.close()
    try:
        r = await measure(connection, base, args.messages, args.rate or None, args.seconds,
                          lambda: passthrough(URL, base))
        r.name = "aio-pika passthrough"
        results.append(r)
    finally:
        await cleanup(connection, base)
    rate = args.rate or max(int(results[0].rate / 2), 1)  # the same rate for every row

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
                due = 2 * (args.messages + r.sent)  # process + publish per message
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


def report(args: argparse.Namespace, results: list[Result],
           scaling: list[ScalingResult]) -> None:
    print(f"\n{args.messages} messages backlog, latency for {args.seconds:.0f}s at half the "
          f"passthrough's rate, prefetch {PREFETCH}; the router validates the schema, "
          "evaluates a CEL route and propagates trace context in every run")
    print(f"{'':44} {'msgs/s':>9} {'ratio':>7} {'p50 ms':>8} {'p99 ms':>8} {'p99 +ms':>8}")
    base = results[0]
    for r in results:
        print(f"{r.name:44} {r.rate:9.0f} {r.rate / base.rate:6.2f}x {r.p50:8.2f} "
              f"{r.p99:8.2f} {r.p99 - base.p99:+8.2f}  {r.note}")
    rival = next((r for r in results if r.name.startswith("FastStream")), None)
    if rival is not None:
        print(f"ratio router (not exported) / FastStream: {results[1].rate / rival.rate:.2f}x")
    for s in scaling:
        cores = "" if s.broker_cores is None else f", broker {s.broker_cores:.2f} cores"
        print(f"mcp-router run --workers {s.workers}: {s.rate:7.0f} msgs/s steady "
              f"({s.rate / base.rate:.2f}x passthrough; router {s.router_cores or 0:.2f} "
              f"cores{cores})")
    if len(scaling) == 2:
        print(f"scaling 1 -> 2 workers: {scaling[1].rate / scaling[0].rate:.2f}x "
              f"on {os.cpu_count()} cores")


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


def config_dir(names: Names) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="mcp-bench-"))
    shutil.copytree(ROOT / "schemas", workdir / "schemas")
    (workdir / "topology.yaml").write_text(yaml.safe_dump(names.topology()))
    return workdir


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
                        help="latency at this rate (default: half the passthrough's)")
    parser.add_argument("--seconds", type=float, default=5.0)
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
