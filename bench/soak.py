"""Flat memory: the router at half load for 10 minutes with every span exported.

``mcp-router run`` (the CLI, as deployed) on a fresh equivalent of the
benchmark's configuration, exporting every span over OTLP/HTTP to the
benchmark's receiver process (``bench/otlp_sink.py``).  Half load is the
benchmark's (``bench/latency.py``): half the hand-written passthrough's
maximum sustained end-to-end rate, measured first in a closed loop with the
load generator running (or ``--rate``).  This process publishes at that rate
on a monotonic schedule and consumes the destination.  Every ``--every`` s
(10) the resident memory of the router and of its span exporter process is
printed; at the end, the growth from the first sample after the warm-up (the
first tenth of the run, at most a minute) to the last one, which must stay
under 5 %, how many messages arrived of how many were published, and how many
spans arrived (2 are due per message).

    python -m bench.soak [--minutes 10] [--rate 0] [--every 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import aio_pika

from bench.entities import ROOT, URL, Names, cleanup, config_dir, message, queue_depth
from bench.latency import half, sustained_passthrough
from bench.otlp_sink import Sink
from bench.rows import router_starter
from bench.scaling import process_tree

WARM_UP = 60.0  # at most; a tenth of a shorter run
LIMIT = 0.05


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def _router(workdir: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "run", "--config", str(workdir), "--watch", "0",
        env=env, cwd=ROOT)


async def publish_at(connection: aio_pika.abc.AbstractConnection, exchange: str, rate: float,
                     seconds: float) -> int:
    """``rate`` a second for ``seconds`` on a monotonic schedule, every 10 ms what is due."""
    channel = await connection.channel(publisher_confirms=True)
    ex = await channel.get_exchange(exchange, ensure=False)
    t0, sent, pending = time.monotonic(), 0, set()
    while (elapsed := time.monotonic() - t0) < seconds:
        due = int(elapsed * rate) - sent
        for _ in range(max(due, 0)):
            task = asyncio.ensure_future(ex.publish(message(), routing_key="OrderCreated"))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(0.01)
    await asyncio.gather(*pending)
    await channel.close()
    return sent


class Arrivals:
    """Keeps the destination empty and counts what reached it."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, m: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.count += 1
        await m.ack()

    async def wait_for(self, count: int, stall: float = 30.0) -> None:
        """Until ``count`` arrived, or ``stall`` s passed without one."""
        seen, since = self.count, time.monotonic()
        while self.count < count and time.monotonic() - since < stall:
            await asyncio.sleep(0.1)
            if self.count != seen:
                seen, since = self.count, time.monotonic()


async def main(args: argparse.Namespace) -> int:
    connection = await aio_pika.connect(URL)
    sink = Sink()
    names = Names("soak")
    workdir = config_dir(names)
    env = {**os.environ, "MCP_AMQP_URL": URL, "MCP_LOG_LEVEL": "WARNING",
           "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.http_url,
           "OTEL_TRACES_SAMPLER": "always_on", "OTEL_SERVICE_NAME": "mcp-router-soak"}
    stop = await router_starter(URL, workdir)()  # declare the topology
    await stop()
    try:
        rate: float = args.rate
        if not rate:
            most = await sustained_passthrough(connection, URL, seconds=5.0)
            rate = half(most)
            print(f"half load: {rate:.0f} msg/s, half the passthrough's maximum sustained "
                  f"end-to-end rate ({most:.0f} msg/s, closed loop)", flush=True)
        before = sink.stats()["spans"]
        code, published = await soak(connection, names, env, workdir, rate, args)
        spans = sink.stats()["spans"] - before
        print(f"spans exported: {spans} of {2 * published} due (2 per message)")
        return code if spans == 2 * published else 1
    finally:
        await cleanup(connection, names)
        await connection.close()
        sink.close()


async def sample(pid: int, until: asyncio.Task[int], every: float) -> list[tuple[float, int, int]]:
    """RSS of ``pid`` and of its children together, every ``every`` s until ``until`` ends."""
    samples: list[tuple[float, int, int]] = []
    t0 = time.monotonic()
    print(f"{'t s':>6} {'router KiB':>11} {'exporter KiB':>13}", flush=True)
    while not until.done():
        due = t0 + (len(samples) + 1) * every
        await asyncio.wait({until}, timeout=max(due - time.monotonic(), 0))
        if until.done() and samples and time.monotonic() - t0 - samples[-1][0] < every / 2:
            break  # the run ended just after a sample: no second one at the same time
        router = rss_kib(pid)
        exporter = sum(rss_kib(p) for p in process_tree(pid)[1:])
        samples.append((time.monotonic() - t0, router, exporter))
        print(f"{samples[-1][0]:6.0f} {router:11d} {exporter:13d}", flush=True)
    return samples


async def soak(connection: aio_pika.abc.AbstractConnection, names: Names, env: dict[str, str],
               workdir: Path, rate: float, args: argparse.Namespace) -> tuple[int, int]:
    """The run; the exit code (0: flat memory, all delivered) and how many were published."""
    seconds = args.minutes * 60
    print(f"soak: {args.minutes:g} min at {rate:.0f} msg/s, every span exported; "
          f"RSS every {args.every:g} s", flush=True)
    channel = await connection.channel()
    arrivals = Arrivals()
    await (await channel.get_queue(names.dest_q, ensure=False)).consume(arrivals)
    proc = await _router(workdir, env)
    await asyncio.sleep(2)
    publisher = asyncio.create_task(publish_at(connection, names.ingress, rate, seconds))
    samples = await sample(proc.pid, publisher, args.every)
    sent = await publisher
    await arrivals.wait_for(sent)
    backlog = await queue_depth(connection, names.ingress_q)
    proc.terminate()
    await proc.wait()
    await channel.close()
    warm_up = min(WARM_UP, seconds / 10)
    base = next((s for s in samples if s[0] >= warm_up), samples[0])
    last = samples[-1]
    growth = (last[1] + last[2]) / (base[1] + base[2]) - 1
    first = (last[1] + last[2]) / (samples[0][1] + samples[0][2]) - 1
    verdict = "ok" if growth < LIMIT else "TOO MUCH"
    print(f"published {sent}, delivered {arrivals.count}"
          + (f" ({backlog} still in the ingress queue)" if backlog else "")
          + f"; RSS growth from t={base[0]:.0f}s to the end: {growth:+.1%} "
          f"({verdict}, limit {LIMIT:.0%}); from the first sample: {first:+.1%}")
    if warm_up < WARM_UP:
        print(f"a short run ({warm_up:.0f} s warm-up) checks the soak, not the memory: "
              f"the limit is for {10 * WARM_UP / 60:.0f} minutes after a {WARM_UP:.0f} s warm-up")
    return (0 if growth < LIMIT and arrivals.count >= sent else 1), sent


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="how long to publish (1 for a short check)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="messages per second (default: half load, see bench/latency.py)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    try:
        import uvloop
        sys.exit(uvloop.run(main(parser.parse_args())))
    except ImportError:
        sys.exit(asyncio.run(main(parser.parse_args())))
