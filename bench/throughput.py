"""Router throughput and latency against a hand-written aio-pika passthrough.

One process, one run, the same broker and the same message:

1. **passthrough**: consume from a quorum queue, publish each message to a
   destination exchange with confirms and ``mandatory``, then ack it: what a
   team would write by hand with aio-pika (prefetch, one task per message).
2. **mcp-router**: ``RouterService`` on an equivalent configuration, with
   JSON Schema validation, a CEL ``when`` route and trace propagation on;
   three times: spans not exported (no ``OTEL_*`` configuration), exported
   over OTLP/HTTP with every trace sampled, and with 10 % sampled.  The OTLP
   endpoint is a counting sink in this process.

For each: *throughput* draining a pre-filled backlog (msgs/s), then
*latency* end to end (publish to the destination consumer) at a fixed rate,
p50/p99.  Prints a table and each run's ratio to the passthrough.

    python bench/throughput.py [--messages 20000] [--rate 500] [--seconds 5] [--no-tracing]
                               [--journal ROUNDS]

``--journal ROUNDS`` adds the journal's cost (``router.journal``, on by
default in ``run``): that many rounds of the unexported router with the
journal off and on, alternated, compared by their median throughput and by
the process CPU time per message; and the journal's own work for one routed
message (the ``record`` calls the router makes for two confirmed copies)
timed alone, as a share of the router's CPU time per message.  On a shared
machine throughput varies by tens of percent between rounds; the CPU shares
are the steadier figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aio_pika
import yaml

from router.config import load_config
from router.envelope import Envelope, Properties
from router.journal import DEFAULT_SIZE, Journal
from router.journalnotes import arrival, decision
from router.outcome import Copy, Decoded, Forward
from router.service import RouterService, Settings
from router.telemetry import Telemetry, TelemetrySettings

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


async def wait_drained(connection: aio_pika.abc.AbstractConnection, n: Names, count: int) -> None:
    while await queue_depth(connection, n.dest_q) < count:
        await asyncio.sleep(0.05)


async def measure(connection: aio_pika.abc.AbstractConnection, n: Names, count: int,
                  rate: int, seconds: float,
                  start: Callable[[], Awaitable[Callable[[], Awaitable[None]]]]) -> Result:
    """Backlog throughput, then latency at a fixed rate, for one consumer implementation."""
    await fill(connection, n.ingress, count)
    began = time.perf_counter()
    stop = await start()
    await wait_drained(connection, n, count)
    throughput = count / (time.perf_counter() - began)
    channel = await connection.channel()
    dest_q = await channel.get_queue(n.dest_q, ensure=False)
    await dest_q.purge()
    latencies: list[float] = []

    async def on_dest(m: aio_pika.abc.AbstractIncomingMessage) -> None:
        sent = (m.headers or {}).get("x-bench-sent")
        if isinstance(sent, int):  # nanoseconds: a float header would be sent as float32
            latencies.append((time.time_ns() - sent) / 1e9)
        await m.ack()

    await channel.set_qos(prefetch_count=500)
    tag = await dest_q.consume(on_dest)
    pub = await connection.channel(publisher_confirms=True)
    ex = await pub.get_exchange(n.ingress, ensure=False)
    total = int(rate * seconds)
    t0 = time.perf_counter()
    pending = set()
    for i in range(total):
        pending.add(asyncio.ensure_future(ex.publish(message(True), routing_key="OrderCreated")))
        delay = t0 + (i + 1) / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*pending)
    deadline = time.monotonic() + 30
    while len(latencies) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await dest_q.cancel(tag)
    await stop()
    await channel.close()
    await pub.close()
    q = statistics.quantiles(latencies, n=100)
    return Result("", throughput, q[49] * 1000, q[98] * 1000)


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


class Collector:
    """An OTLP/HTTP endpoint that accepts and counts exports (decoding is the collector's
    cost, not the router's), served from a thread like a sidecar would be."""

    def __init__(self) -> None:
        self.requests = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                collector.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"


async def cleanup(connection: aio_pika.abc.AbstractConnection, n: Names) -> None:
    channel = await connection.channel()
    for q in (n.ingress_q, n.dest_q, n.dlq):
        await channel.queue_delete(q)
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
        r = await measure(connection, base, args.messages, args.rate, args.seconds,
                          lambda: passthrough(URL, base))
        r.name = "aio-pika passthrough"
        results.append(r)
    finally:
        await cleanup(connection, base)

    collector = Collector()
    variants = [("mcp-router, tracing not exported", TelemetrySettings())]
    if not args.no_tracing:
        # Not parent-based: every bench message starts its own sampled trace upstream.
        variants += [
            (f"mcp-router, OTLP export, {int(ratio * 100)}% sampled",
             TelemetrySettings(exporter="otlp", endpoint=collector.url, sampler="traceidratio",
                               ratio=ratio)) for ratio in (1.0, 0.1)]
    for label, telemetry in variants:
        results.append(await run_router(connection, args, label, telemetry))
    journal = await journal_rounds(connection, args) if args.journal else None
    await connection.close()
    collector.server.shutdown()

    print(f"\n{args.messages} messages backlog, latency at {args.rate} msg/s for "
          f"{args.seconds:.0f}s, prefetch {PREFETCH}; the router validates the schema, "
          "evaluates a CEL route and propagates trace context in every run")
    print(f"{'':40} {'msgs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>7}")
    for r in results:
        print(f"{r.name:40} {r.rate:9.0f} {r.p50:8.2f} {r.p99:8.2f} "
              f"{r.rate / results[0].rate:6.2f}x")
    print(f"ratio router/passthrough: {results[1].rate / results[0].rate:.2f}x "
          f"(spans exported: {collector.requests} requests)")
    if journal is not None:
        off, on = (statistics.median(r.rate for r in runs) for runs in journal)
        cpu_off, cpu_on = (statistics.median(float(r.name) for r in runs) for runs in journal)
        alone = journal_microseconds()
        print(f"journal off: {off:.0f} msgs/s, on: {on:.0f} msgs/s (median of "
              f"{len(journal[0])} alternated rounds: {(on - off) / off * 100:+.1f} %; off "
              f"{', '.join(f'{r.rate:.0f}' for r in journal[0])}; on "
              f"{', '.join(f'{r.rate:.0f}' for r in journal[1])})")
        print(f"journal CPU per message: off {cpu_off:.0f} µs, on {cpu_on:.0f} µs "
              f"({(cpu_on - cpu_off) / cpu_off * 100:+.1f} %); its own work alone "
              f"{alone:.1f} µs = {alone / cpu_off * 100:.1f} % of the router's CPU per "
              "message")


async def journal_rounds(connection: aio_pika.abc.AbstractConnection, args: argparse.Namespace
                         ) -> tuple[list[Result], list[Result]]:
    """The unexported router with the journal off and on, alternated ``args.journal`` times."""
    off: list[Result] = []
    on: list[Result] = []
    handled = args.messages + args.rate * args.seconds  # backlog, then the latency phase
    for _ in range(args.journal):
        for size, runs in ((0, off), (DEFAULT_SIZE, on)):
            cpu = time.process_time()
            runs.append(await run_router(connection, args, f"journal {size}", NOT_EXPORTED,
                                         size))
            runs[-1].name = f"{(time.process_time() - cpu) / handled * 1e6:.0f}"  # CPU µs/msg
    return off, on


def journal_microseconds(rounds: int = 50_000) -> float:
    """CPU µs of the journal's work for one message routed to two confirmed copies."""
    envelope = Envelope(BODY, Properties(
        type="OrderCreated", message_id="m", user_id="guest", headers={"x-schema-version": 2}),
        exchange="bench.ingress", routing_key="OrderCreated")
    outcome = Forward(Decoded("OrderCreated", 2, {}), (Copy("r1", "dest", "order.created"),
                                                       Copy("r2", "dest", "order.review")))
    journal = Journal()
    start = time.process_time()
    for i in range(rounds):
        message_id = f"m-{i}"  # a new id each time: the oldest are dropped as in production
        journal.record(message_id, "arrived",
                       **arrival(envelope, None, format(i << 64 | i, "032x")))
        event, detail = decision(outcome)
        journal.record(message_id, event, **detail)
        for copy in outcome.copies:
            journal.record(message_id, "copy", route=copy.route, exchange=copy.exchange,
                           routing_key=copy.routing_key, attempts=1, confirmed=True,
                           error=None)
    return (time.process_time() - start) / rounds * 1e6


async def run_router(connection: aio_pika.abc.AbstractConnection, args: argparse.Namespace,
                     label: str, telemetry: TelemetrySettings,
                     journal_size: int = DEFAULT_SIZE) -> Result:
    """One router run on a fresh equivalent configuration."""
    names = Names("router")
    workdir = Path(tempfile.mkdtemp(prefix="mcp-bench-"))
    shutil.copytree(ROOT / "schemas", workdir / "schemas")
    (workdir / "topology.yaml").write_text(yaml.safe_dump(names.topology()))
    # declare once so the backlog can be published before the router starts
    starter = router_starter(URL, workdir, telemetry, journal_size)
    stop = await starter()
    await stop()
    try:
        r = await measure(connection, names, args.messages, args.rate, args.seconds, starter)
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
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-tracing", action="store_true",
                        help="skip the two runs that export spans")
    parser.add_argument("--journal", type=int, default=0, metavar="ROUNDS",
                        help="also compare the journal off and on, ROUNDS times each")
    arguments = parser.parse_args()
    try:
        import uvloop
        uvloop.run(main(arguments))
    except ImportError:
        asyncio.run(main(arguments))
