"""How long to wait before reconnecting, and to which node (pure: time and chance passed in).

A router that lost its broker session waits ``initial`` seconds, then twice as
long after every session that failed again, up to ``maximum``.  A session that
was healthy (routing) for ``healthy_after`` seconds or more resets the ladder:
a blip after an hour of routing costs ``initial`` again, not the maximum.
Every wait is jittered (``[1 - jitter, 1]`` of it), so replicas that lost the
same node do not come back in lockstep.

``next_node`` chooses where to try first: after the node the router was on,
so a dead node is not asked first again; the order of the list is otherwise
kept (the first node that answers is used).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff", "next_node"]


@dataclass
class Backoff:
    """The reconnect ladder of one router (one instance per service)."""

    initial: float = 1.0
    maximum: float = 15.0
    healthy_after: float = 10.0
    jitter: float = 0.5  # the fraction of each wait that is random
    failures: int = 0  # sessions lost since the last healthy one

    def __post_init__(self) -> None:
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")
        if self.initial < 0 or self.maximum < self.initial:
            raise ValueError("backoff needs 0 <= initial <= maximum")

    def after_session(self, healthy_for: float, chance: float) -> float:
        """The wait after a session that routed for ``healthy_for`` seconds (0 if it never
        became ready); ``chance`` is uniform in [0, 1)."""
        if healthy_for >= self.healthy_after:
            self.failures = 0
        base = min(self.initial * float(2 ** min(self.failures, 32)), self.maximum)
        self.failures += 1
        return base * (1 - self.jitter * chance)

    def reset(self) -> None:
        self.failures = 0


def next_node(count: int, current: int | None) -> list[int]:
    """The order to try ``count`` nodes in: the one after ``current`` first, wrapping."""
    start = 0 if current is None else (current + 1) % count
    return [(start + i) % count for i in range(count)]
