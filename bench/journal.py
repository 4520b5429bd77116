"""What the message journal (``router.observe.journal``, on by default in ``run``) costs.

    python -m bench.journal [--rounds 3] [--messages 10000] [--seconds 2]

Alternates rounds of the unexported router with the journal off and on, and
compares their median throughput and their process CPU time per message; then
times the journal's own work for one routed message (the ``record`` calls the
router makes for two confirmed copies) alone, as a share of the router's CPU
time per message.  On a shared machine throughput varies by tens of percent
between rounds; the CPU shares are the steadier figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aio_pika

from bench.entities import URL
from bench.loadgen import WARM_UP
from bench.rows import NOT_EXPORTED, Row, run_router
from router.core.envelope import Envelope, Properties
from router.core.journalnotes import arrival, decision
from router.core.outcome import Copy, Decoded, Forward
from router.observe.journal import DEFAULT_SIZE, Journal

__all__ = ["journal_microseconds", "record_one_message"]

_ENVELOPE = Envelope(b'{"order_id": "o-1"}', Properties(
    type="OrderCreated", message_id="m", user_id="guest", headers={"x-schema-version": 2}),
    exchange="bench.ingress", routing_key="OrderCreated")
_OUTCOME = Forward(Decoded("OrderCreated", 2, {}), (Copy("r1", "dest", "order.created"),
                                                    Copy("r2", "dest", "order.review")))


def record_one_message(journal: Journal, i: int) -> None:
    """The journal calls the router makes for one message routed to two confirmed copies."""
    message_id = f"m-{i}"  # a new id each time: the oldest are dropped as in production
    journal.record(message_id, "arrived", **arrival(_ENVELOPE, None, format(i << 64 | i, "032x")))
    event, detail = decision(_OUTCOME)
    journal.record(message_id, event, **detail)
    for copy in _OUTCOME.copies:
        journal.record(message_id, "copy", route=copy.route, exchange=copy.exchange,
                       routing_key=copy.routing_key, attempts=1, confirmed=True, error=None)


def journal_microseconds(rounds: int = 50_000) -> float:
    """CPU µs of the journal's work for one message routed to two confirmed copies."""
    journal = Journal()
    start = time.process_time()
    for i in range(rounds):
        record_one_message(journal, i)
    return (time.process_time() - start) / rounds * 1e6


async def journal_rounds(args: argparse.Namespace) -> tuple[list[Row], list[float],
                                                             list[Row], list[float]]:
    """The unexported router with the journal off and on, alternated ``args.rounds`` times."""
    off: list[Row] = []
    on: list[Row] = []
    cpu_off: list[float] = []
    cpu_on: list[float] = []
    handled = args.messages + args.rate * (WARM_UP + args.seconds)  # backlog, latency phase
    connection = await aio_pika.connect(URL)
    try:
        for _ in range(args.rounds):
            for size, runs, cpus in ((0, off, cpu_off), (DEFAULT_SIZE, on, cpu_on)):
                cpu = time.process_time()
                runs.append(await run_router(connection, args, f"journal {size}", NOT_EXPORTED,
                                             args.rate, size))
                cpus.append((time.process_time() - cpu) / handled * 1e6)
    finally:
        await connection.close()
    return off, cpu_off, on, cpu_on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    off, cpu_off, on, cpu_on = asyncio.run(journal_rounds(args))
    rate_off, rate_on = (statistics.median(r.rate for r in runs) for runs in (off, on))
    c_off, c_on = statistics.median(cpu_off), statistics.median(cpu_on)
    alone = journal_microseconds()
    print(f"journal off: {rate_off:.0f} msgs/s, on: {rate_on:.0f} msgs/s (median of "
          f"{args.rounds} alternated rounds: {(rate_on - rate_off) / rate_off * 100:+.1f} %)")
    print(f"journal CPU per message: off {c_off:.0f} µs, on {c_on:.0f} µs "
          f"({(c_on - c_off) / c_off * 100:+.1f} %); its own work alone {alone:.1f} µs = "
          f"{alone / c_off * 100:.1f} % of the router's CPU per message")


if __name__ == "__main__":
    main()
