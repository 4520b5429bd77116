"""Load at a fixed rate from a process of its own, and end-to-end latency at the destination.

Publishing and consuming in the benchmark's own process would share one core
with the router under test, and at the rates measured the load generator then
falls behind (queues grow, latency means nothing).  This process publishes
``rate`` messages a second for ``seconds`` (each stamped with the time it was
sent, in ns), consumes the destination queue and prints one JSON line: sent,
received, p50 and p99 in ms.

    python -m bench.loadgen EXCHANGE DEST_QUEUE RATE SECONDS    # broker: $MCP_AMQP_URL
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

import aio_pika

from bench.throughput import URL, message


async def run(url: str, exchange: str, dest_queue: str, rate: int, seconds: float) -> dict[
        str, float]:
    connection = await aio_pika.connect(url)
    latencies: list[float] = []
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=500)
    dest = await channel.get_queue(dest_queue, ensure=False)

    async def on_dest(m: aio_pika.abc.AbstractIncomingMessage) -> None:
        sent = (m.headers or {}).get("x-bench-sent")
        if isinstance(sent, int):  # nanoseconds: a float header would be sent as float32
            latencies.append((time.time_ns() - sent) / 1e9)
        await m.ack()

    tag = await dest.consume(on_dest)
    pub = await connection.channel(publisher_confirms=True)
    ex = await pub.get_exchange(exchange, ensure=False)
    total = int(rate * seconds)
    t0 = time.perf_counter()
    pending: set[asyncio.Future[object]] = set()
    for i in range(total):
        task = asyncio.ensure_future(ex.publish(message(True), routing_key="OrderCreated"))
        pending.add(task)
        task.add_done_callback(pending.discard)
        delay = t0 + (i + 1) / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*pending)
    deadline = time.monotonic() + 30
    while len(latencies) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await dest.cancel(tag)
    await connection.close()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {"sent": total, "received": len(latencies), "p50": q[49] * 1000,
            "p99": q[98] * 1000}


if __name__ == "__main__":
    exchange, queue, rate, seconds = sys.argv[1:5]
    import uvloop

    print(json.dumps(uvloop.run(run(URL, exchange, queue, int(rate), float(seconds)))))
