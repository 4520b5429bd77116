"""The latency phase, and the rate it runs at: ``bench/loadgen.py`` in a process of its own.

**Half load** is half the passthrough's *maximum sustained end-to-end rate*:
the hand-written passthrough (``bench/passthrough.py``) runs while the load
generator publishes in a closed loop (a window of ``CLOSED_WINDOW`` messages,
each holding its place from its publish to its arrival at the destination
consumer), and the messages arriving a second over ``seconds`` after a
one-second warm-up are that maximum.  It costs what the latency phase costs:
the generator's confirmed publishes into a quorum queue, the passthrough's
delivery and republish, the destination consumer, all on this machine.  The
backlog drain rate is higher (its messages were published beforehand) and
not sustainable end to end: at half of it the broker and the cores are
saturated, and latency is queueing, not the cost of what is measured.

Every row's latency is then measured at that one rate (or ``--rate``), paced
(``bench/loadgen.py``: monotonic schedule, confirms in a bounded window,
nanosecond stamps, batched acks at the destination, the first second
discarded), in rounds (``Round``): the rows take turns, so the spells when
this two-core machine is slow (a broker's log written out, another process
scheduled) fall on every row.  At this rate the cores are far from idle, and a
single five-second run's p99 moved by tens of milliseconds from run to run for
the passthrough alone.  ``Latency.pooled`` gives p50, p99 and p99.9 over every
round's messages, and ``gap`` the row's p99 less the passthrough's in the same
round, as a median and a range: the figure the latency target is about.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aio_pika

from bench.entities import PREFETCH, ROOT, Names, cleanup, declare_plain
from bench.loadgen import LATE, percentile
from bench.passthrough import passthrough

__all__ = [
    "CLOSED_WINDOW",
    "HALF_LOAD",
    "Latency",
    "Round",
    "gap",
    "half",
    "paced",
    "spread",
    "sustained",
    "sustained_passthrough",
]

OUTLIER = 3.0  # a round whose p99 is this many times the median round's is named
CLOSED_WINDOW = 2 * PREFETCH  # in flight end to end: the consumer's prefetch full, as many ready
HALF_LOAD = ("half load = half the passthrough's maximum sustained end-to-end rate "
             "(closed loop, load generator running)")


@dataclass(frozen=True)
class Round:
    """One paced run, as ``bench/loadgen.py`` measured it."""

    sent: int
    received: int
    timed: list[int]  # ns, in order: the messages sent after the warm-up
    late: float  # how far behind its schedule the last message went out, share of the run
    rate: float  # arrivals a second after the warm-up

    @property
    def p99(self) -> float:
        return percentile(self.timed, 0.99) / 1e6


@dataclass(frozen=True)
class Latency:
    """A row's paced rounds pooled (ms): every timed message of every round counts once."""

    target: float  # msg/s asked for
    sent: int
    received: int
    measured: int  # samples after the warm-ups
    p50: float
    p99: float
    p999: float
    late: float  # the latest round's
    rate: float  # the slowest round's arrivals a second
    round_p99s: tuple[float, ...] = ()

    @classmethod
    def pooled(cls, target: float, rounds: list[Round]) -> Latency:
        timed = sorted(t for r in rounds for t in r.timed)
        return cls(target, sum(r.sent for r in rounds), sum(r.received for r in rounds),
                   len(timed), percentile(timed, 0.5) / 1e6, percentile(timed, 0.99) / 1e6,
                   percentile(timed, 0.999) / 1e6, max((r.late for r in rounds), default=0.0),
                   min((r.rate for r in rounds), default=0.0),
                   tuple(r.p99 for r in rounds))

    @property
    def round_p99(self) -> float:
        """The median round's p99: what one slow spell in one round does not move."""
        return statistics.median(self.round_p99s) if self.round_p99s else self.p99

    @property
    def kept_rate(self) -> bool:
        return self.late <= LATE

    def note(self) -> str:
        parts = [f"latency at {self.target:.0f} msg/s, {self.measured} timed"]
        if self.received < self.sent:
            parts.append(f"only {self.received} of {self.sent} arrived")
        if not self.kept_rate:
            parts.append(f"LOADGEN FELL BEHIND: its last message went out {self.late:.0%} "
                         "late, the rate was not kept")
        elif self.rate < (1 - LATE) * self.target:
            parts.append(f"NOT KEPT UP in a round: {self.rate:.0f} msg/s arrived, a queue "
                         "built up (that round's latency is queueing)")
        if self.round_p99s and max(self.round_p99s) > OUTLIER * self.round_p99:
            parts.append(f"one round's p99 was {max(self.round_p99s):.0f} ms; pooled p99 "
                         f"{self.p99:.1f} ms")
        return "; ".join(parts)


def spread(values: list[float]) -> tuple[float, float, float]:
    """Median, lowest, highest (0s for none)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0, 0.0, 0.0
    return statistics.median(ordered), ordered[0], ordered[-1]


def gap(row: Latency, base: Latency) -> tuple[float, float, float]:
    """Round by round, the row's p99 less the passthrough's in the same round (ms):
    median, lowest, highest.  Rounds alternate rows, so the machine's moods fall on
    both sides of each difference."""
    return spread([a - b for a, b in zip(row.round_p99s, base.round_p99s, strict=False)])


async def _loadgen(*args: str) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.loadgen", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    if process.returncode:
        raise SystemExit(f"bench.loadgen {' '.join(args)} failed ({process.returncode}):\n"
                         f"{err.decode()[-3000:]}")
    answer: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return answer


async def paced(ingress: str, dest_q: str, rate: float, seconds: float) -> Round:
    """Latency through whatever consumes ``ingress``'s queue, at ``rate`` for ``seconds``."""
    with tempfile.TemporaryDirectory() as scratch:
        dump = Path(scratch, "timed.json")
        r = await _loadgen(ingress, dest_q, "--seconds", str(seconds), "--rate", str(rate),
                           "--dump", str(dump))
        timed: list[int] = json.loads(await asyncio.to_thread(dump.read_text))
    return Round(int(r["sent"]), int(r["received"]), timed, r["late"], r["rate"])


async def sustained(ingress: str, dest_q: str, seconds: float,
                    window: int = CLOSED_WINDOW) -> float:
    """Arrivals a second, closed loop: the most the path sustains end to end."""
    r = await _loadgen(ingress, dest_q, "--seconds", str(seconds), "--closed",
                       "--window", str(window))
    return r["rate"]


def half(maximum: float) -> int:
    return max(int(maximum / 2), 1)


async def sustained_passthrough(connection: aio_pika.abc.AbstractConnection, url: str,
                                seconds: float) -> float:
    """``sustained`` for the passthrough, on entities of its own (deleted after)."""
    names = Names("sustained")
    channel = await connection.channel()
    await declare_plain(channel, names)
    await channel.close()
    try:
        stop = await passthrough(url, names)
        try:
            return await sustained(names.ingress, names.dest_q, seconds)
        finally:
            await stop()
    finally:
        await cleanup(connection, names)
