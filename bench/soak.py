"""Flat memory: the router at half load for 10 minutes with every span exported.

``mcp-router run`` (the CLI, as deployed) on a fresh equivalent of the
benchmark's configuration, exporting every span over OTLP/HTTP to the
benchmark's receiver process.  Half load is half the rate it drains a
backlog at (measured first, or ``--rate``).  Every 10 s the resident memory
of the router and of its span exporter process is printed; at the end, the
growth from the first sample after the warm-up minute to the last one, which
must stay under 5 %, and how many spans arrived of how many were due.

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

from bench.otlp_sink import Sink
from bench.scaling import process_tree
from bench.throughput import (
    URL,
    Names,
    cleanup,
    config_dir,
    fill,
    message,
    queue_depth,
    router_starter,
)

ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 60.0
LIMIT = 0.05


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def calibrate(connection: aio_pika.abc.AbstractConnection, n: Names, env: dict[str, str],
                    workdir: Path, count: int = 10_000) -> float:
    """The router's drain rate on a backlog of ``count``, exported."""
    await fill(connection, n.ingress, count)
    proc = await _router(workdir, env)
    began = time.perf_counter()
    try:
        while await queue_depth(connection, n.dest_q) < count:
            await asyncio.sleep(0.05)
        return count / (time.perf_counter() - began)
    finally:
        proc.terminate()
        await proc.wait()
        channel = await connection.channel()
        await (await channel.get_queue(n.dest_q, ensure=False)).purge()
        await channel.close()


async def _router(workdir: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "run", "--config", str(workdir), "--watch", "0",
        env=env, cwd=ROOT)


async def publish_at(connection: aio_pika.abc.AbstractConnection, exchange: str, rate: float,
                     seconds: float) -> int:
    channel = await connection.channel(publisher_confirms=True)
    ex = await channel.get_exchange(exchange, ensure=False)
    t0, sent, pending = time.perf_counter(), 0, set()
    while (elapsed := time.perf_counter() - t0) < seconds:
        due = int(elapsed * rate) - sent
        for _ in range(max(due, 0)):
            task = asyncio.ensure_future(ex.publish(message(False), routing_key="OrderCreated"))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(0.01)
    await asyncio.gather(*pending)
    await channel.close()
    return sent


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
        rate = args.rate or await calibrate(connection, names, env, workdir) / 2
        before = sink.stats()["spans"]
        code = await soak(connection, names, env, workdir, rate, args)
        spans = sink.stats()["spans"] - before
        print(f"spans exported: {spans} (due: 2 per message)")
        return code
    finally:
        await cleanup(connection, names)
        await connection.close()
        sink.close()


async def soak(connection: aio_pika.abc.AbstractConnection, names: Names, env: dict[str, str],
               workdir: Path, rate: float, args: argparse.Namespace) -> int:
    seconds = args.minutes * 60
    print(f"soak: {args.minutes:g} min at {rate:.0f} msg/s, every span exported; "
          f"RSS every {args.every:g} s", flush=True)
    channel = await connection.channel()
    dest = await channel.get_queue(names.dest_q, ensure=False)
    await dest.consume(lambda m: m.ack())  # keep the destination empty
    proc = await _router(workdir, env)
    await asyncio.sleep(2)
    publisher = asyncio.create_task(publish_at(connection, names.ingress, rate, seconds))
    samples: list[tuple[float, int, int]] = []
    t0 = time.perf_counter()
    print(f"{'t s':>6} {'router KiB':>11} {'exporter KiB':>13}")
    while not publisher.done():
        await asyncio.wait({publisher}, timeout=args.every)
        pids = process_tree(proc.pid)
        router, exporter = rss_kib(proc.pid), sum(rss_kib(p) for p in pids[1:])
        samples.append((time.perf_counter() - t0, router, exporter))
        print(f"{samples[-1][0]:6.0f} {router:11d} {exporter:13d}", flush=True)
    sent = await publisher
    proc.terminate()
    await proc.wait()
    await channel.close()
    base = next((s for s in samples if s[0] >= WARM_UP), samples[0])
    last = samples[-1]
    growth = (last[1] + last[2]) / (base[1] + base[2]) - 1
    first = (last[1] + last[2]) / (samples[0][1] + samples[0][2]) - 1
    verdict = "ok" if growth < LIMIT else "TOO MUCH"
    print(f"published {sent}; RSS growth from t={base[0]:.0f}s to the end: {growth:+.1%} "
          f"({verdict}, limit {LIMIT:.0%}); from the first sample: {first:+.1%}")
    return 0 if growth < LIMIT else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="messages per second (default: half the measured drain rate)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    try:
        import uvloop
        sys.exit(uvloop.run(main(parser.parse_args())))
    except ImportError:
        sys.exit(asyncio.run(main(parser.parse_args())))
