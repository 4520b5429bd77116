"""The live flow's numbers: totals read from the metrics, rates per second, the chart (pure).

The router's own Prometheus exposition is the source (``totals``), so the
console reads the same numbers from one router, from a supervisor that sums
its workers', or from another router's ``/metrics`` over HTTP.  ``Rates``
keeps the last minutes of per-second rates; ``chart`` turns them into SVG
polylines.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["HISTORY", "Chart", "Rate", "Rates", "Totals", "chart", "totals"]

HISTORY = 300  # samples kept: five minutes at one a second


@dataclass(frozen=True, slots=True)
class Totals:
    """Counters since the router started."""

    settled: float = 0.0  # ingress messages settled, whatever the outcome
    routed: float = 0.0
    dead_lettered: float = 0.0  # dead letters published (whole messages and copies)


def totals(exposition: bytes) -> Totals:
    """The flow's counters from a Prometheus text exposition (missing ones are 0)."""
    settled = routed = dead = 0.0
    for family in text_string_to_metric_families(exposition.decode("utf-8", "replace")):
        for sample in family.samples:
            if sample.name == "mcp_router_messages_total":
                settled += sample.value
                routed += sample.value if sample.labels.get("outcome") == "routed" else 0.0
            elif sample.name == "mcp_router_dead_letters_total":
                dead += sample.value
    return Totals(settled, routed, dead)


@dataclass(frozen=True, slots=True)
class Rate:
    """Per-second rates over one sampling interval ending at ``at`` (monotonic seconds)."""

    at: float
    ingress: float
    routed: float
    dead_lettered: float


class Rates:
    """The recent rates, from successive ``Totals``; a counter that went down restarts."""

    def __init__(self, history: int = HISTORY) -> None:
        self.samples: deque[Rate] = deque(maxlen=history)
        self._last: tuple[float, Totals] | None = None

    def add(self, at: float, now: Totals) -> None:
        if self._last is not None and at > self._last[0]:
            then, before = self._last
            span = at - then

            def per_second(a: float, b: float) -> float:
                return max(b - a, 0.0) / span if b >= a else b / span
            self.samples.append(Rate(at, per_second(before.settled, now.settled),
                                     per_second(before.routed, now.routed),
                                     per_second(before.dead_lettered, now.dead_lettered)))
        self._last = (at, now)

    def latest(self) -> Rate | None:
        return self.samples[-1] if self.samples else None


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    top: float  # the value at the top edge
    routed: str  # SVG polyline points
    dead_lettered: str
    seconds: int  # the time the x axis spans


def _nice(value: float) -> float:
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000,
                 50_000, 100_000):
        if value <= step:
            return float(step)
    return value


def chart(samples: list[Rate], width: int = 600, height: int = 120,
          seconds: int = HISTORY) -> Chart:
    """Routed and dead-lettered per second, newest at the right edge."""
    top = _nice(max([max(s.routed, s.dead_lettered) for s in samples], default=0.0))
    if not samples:
        return Chart(width, height, top, "", "", seconds)
    end = samples[-1].at

    def points(attr: str) -> str:
        out = []
        for s in samples:
            x = width - (end - s.at) * width / seconds
            if x >= 0:
                out.append(f"{x:.1f},{height - getattr(s, attr) * height / top:.1f}")
        return " ".join(out)
    return Chart(width, height, top, points("routed"), points("dead_lettered"), seconds)
