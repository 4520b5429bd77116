"""Load from a process of its own, and end-to-end latency at the destination.

Publishing and consuming in the benchmark's own process would share a core
with the router under test.  This process publishes the benchmark's order
(persistent, with publisher confirms) to EXCHANGE and consumes DEST_QUEUE, on
two connections, in one of two modes:

* ``--rate R`` (paced): R messages a second for WARM_UP + SECONDS.  Message i
  is due at t0 + i/R on the monotonic clock; each tick (about 1 ms) publishes
  every message now due, so the load neither drifts nor arrives in bursts of
  the event loop's sleep granularity.  At most ``WINDOW`` publishes await their
  confirms at once: a broker that cannot keep up makes the generator late
  instead of its backlog long.  ``late`` is how far behind its schedule the
  last message went out, as a share of the run; over ``LATE`` (5 %) the
  generator did not keep the rate.
* ``--closed`` (closed loop): as fast as a window of ``--window`` messages
  allows, where a message holds its place in the window from its publish to
  its arrival at DEST_QUEUE, so nothing queues up between them.  The rate of
  arrivals in the SECONDS after the warm-up is then the most the path sustains
  end to end with this generator running.

Each message carries ``time.monotonic_ns()`` at its publish (the header
``x-bench-sent``); the destination consumer takes the difference on arrival
and acks in batches (``multiple=True``), so the measuring side costs little.
Messages sent in the first WARM_UP second are not counted.  Prints one JSON
line: sent, received, measured (the samples kept), p50, p99 and p999 in ms,
late, and rate (arrivals a second after the warm-up).

    python -m bench.loadgen EXCHANGE DEST_QUEUE --seconds 5 --rate 600
    python -m bench.loadgen EXCHANGE DEST_QUEUE --seconds 5 --closed [--window 512]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import time

import aio_pika

from bench.entities import SENT_HEADER, URL, message

__all__ = ["LATE", "WARM_UP", "WINDOW", "kept", "percentile", "summary"]

WARM_UP = 1.0  # seconds whose samples are discarded
TICK = 0.001  # the pacing's shortest sleep
WINDOW = 512  # paced: confirms awaited at once; closed: messages in flight end to end
LATE = 0.05
ACK_BATCH = 64
DEST_PREFETCH = 1024  # well above ACK_BATCH: batched acks never stall the consumer
DRAIN = 30.0  # seconds to wait for the last arrivals


class Arrivals:
    """The destination consumer: one (sent, arrived) pair per message, acks in batches."""

    def __init__(self, window: asyncio.Semaphore | None) -> None:
        self.samples: list[tuple[int, int]] = []  # monotonic ns
        self.window = window  # closed loop: an arrival frees a place
        self.unacked = 0
        self.last: aio_pika.abc.AbstractIncomingMessage | None = None

    async def __call__(self, m: aio_pika.abc.AbstractIncomingMessage) -> None:
        arrived = time.monotonic_ns()
        sent = (m.headers or {}).get(SENT_HEADER)
        if isinstance(sent, int):
            self.samples.append((sent, arrived))
        if self.window is not None:
            self.window.release()
        # Counted before the first await: aio-pika starts one task per delivery, in order.
        self.unacked, self.last = self.unacked + 1, m
        if self.unacked >= ACK_BATCH:
            self.unacked = 0
            await m.ack(multiple=True)

    async def flush(self) -> None:
        if self.unacked and self.last is not None:
            self.unacked = 0
            await self.last.ack(multiple=True)

    async def wait_for(self, count: int, seconds: float) -> None:
        """Until ``count`` messages arrived, or ``seconds`` passed (the summary tells)."""
        deadline = time.monotonic() + seconds
        while len(self.samples) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


class Sender:
    """Publishes with confirms; a place in ``gate`` is taken per message before it goes."""

    def __init__(self, exchange: aio_pika.abc.AbstractExchange, gate: asyncio.Semaphore,
                 free_on_confirm: bool) -> None:
        self.exchange, self.gate, self.free_on_confirm = exchange, gate, free_on_confirm
        self.sent = 0
        self.flying: set[asyncio.Future[object]] = set()
        self.errors: list[BaseException] = []

    async def send(self) -> None:
        await self.gate.acquire()
        publish = self.exchange.publish(message(time.monotonic_ns()), routing_key="OrderCreated")
        task = asyncio.ensure_future(publish)
        self.flying.add(task)
        task.add_done_callback(self._confirmed)
        self.sent += 1

    def _confirmed(self, task: asyncio.Future[object]) -> None:
        self.flying.discard(task)
        if self.free_on_confirm:
            self.gate.release()
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())  # type: ignore[arg-type]  # not None: checked

    async def settle(self) -> None:
        await asyncio.gather(*self.flying)
        if self.errors:
            raise self.errors[0]


async def paced(sender: Sender, rate: float, duration: float) -> float:
    """``rate`` messages a second for ``duration``; how late the last went out (share)."""
    total = max(int(rate * duration), 1)
    t0 = time.monotonic()
    while sender.sent < total:
        due = min(total, int((time.monotonic() - t0) * rate) + 1)
        while sender.sent < due:
            await sender.send()
        if sender.sent < total:
            await asyncio.sleep(max(t0 + sender.sent / rate - time.monotonic(), TICK))
    behind = time.monotonic() - t0 - (total - 1) / rate
    return max(behind, 0.0) / duration


async def closed(sender: Sender, duration: float) -> None:
    """As fast as the window allows, for ``duration``."""
    end = time.monotonic() + duration
    async with asyncio.timeout(duration + DRAIN):  # arrivals stopped: fail, do not hang
        while time.monotonic() < end:
            await sender.send()


def percentile(ordered: list[int], q: float) -> int:
    """Nearest rank; 0 for no samples."""
    if not ordered:
        return 0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def kept(samples: list[tuple[int, int]], warm_ns: int) -> list[int]:
    """The latencies (ns, in order) of the messages sent after the warm-up."""
    return sorted(arrived - s for s, arrived in samples if s >= warm_ns)


def summary(samples: list[tuple[int, int]], sent: int, warm_ns: int, seconds: float,
            late: float) -> dict[str, float]:
    """The JSON line: latencies of messages sent after the warm-up, arrivals per second."""
    timed = kept(samples, warm_ns)
    end_ns = warm_ns + int(seconds * 1e9)
    arrivals = sum(1 for _, arrived in samples if warm_ns <= arrived < end_ns)
    return {"sent": sent, "received": len(samples), "measured": len(timed),
            "p50": percentile(timed, 0.5) / 1e6, "p99": percentile(timed, 0.99) / 1e6,
            "p999": percentile(timed, 0.999) / 1e6, "late": late, "rate": arrivals / seconds}


async def run(url: str, args: argparse.Namespace) -> dict[str, float]:
    consuming, publishing = await aio_pika.connect(url), await aio_pika.connect(url)
    try:
        window = asyncio.Semaphore(args.window)
        arrivals = Arrivals(window if args.closed else None)
        channel = await consuming.channel()
        await channel.set_qos(prefetch_count=DEST_PREFETCH)
        dest = await channel.get_queue(args.dest_queue, ensure=False)
        tag = await dest.consume(arrivals)
        out = await publishing.channel(publisher_confirms=True)
        sender = Sender(await out.get_exchange(args.exchange, ensure=False), window,
                        free_on_confirm=not args.closed)
        duration, late = WARM_UP + args.seconds, 0.0
        gc.disable()  # no collector pauses on the measuring side; the run is seconds long
        t0 = time.monotonic_ns()
        if args.closed:
            await closed(sender, duration)
        else:
            late = await paced(sender, args.rate, duration)
        await sender.settle()
        await arrivals.wait_for(sender.sent, DRAIN)
        gc.enable()
        await arrivals.flush()
        await dest.cancel(tag)
    finally:
        await consuming.close()
        await publishing.close()
    warm_ns = t0 + int(WARM_UP * 1e9)
    if args.dump:
        with open(args.dump, "w") as timed:  # noqa: ASYNC230 -- the run is over
            json.dump(kept(arrivals.samples, warm_ns), timed)
    return summary(arrivals.samples, sender.sent, warm_ns, args.seconds, late)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("exchange")
    parser.add_argument("dest_queue")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured, after the warm-up")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=float, help="messages a second, paced")
    mode.add_argument("--closed", action="store_true", help="closed loop: as fast as it goes")
    parser.add_argument("--window", type=int, default=WINDOW)
    parser.add_argument("--dump", help="also write the timed latencies (ns, after the warm-up) "
                        "to this file, as a JSON list, so rounds can be pooled")
    args = parser.parse_args()
    import uvloop  # noqa: PLC0415 - the benchmark's loop; a dependency of the router

    print(json.dumps(uvloop.run(run(URL, args))))


if __name__ == "__main__":
    main()
