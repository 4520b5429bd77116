"""The queues a service needs on the broker: its own checked, its retry queues declared.

Guarantees: a service never starts on a queue or a dead-letter exchange that
does not exist (``MissingQueue``: ``mcp-router apply`` declares the topology,
a service does not); the TTL retry queues of its policies are declared
(idempotently, ``router.broker.declare``) before the first delivery can be parked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from router.broker.declare import declare_queues
from router.config.retry_policy import retry_queue_name
from router.config.topology import Topology
from router.errors import NotFound, RouterError
from router.sdk.links import Links

__all__ = ["MissingQueue", "prepare_queues"]


class MissingQueue(RouterError):
    """A queue the service consumes, or the dead-letter exchange, does not exist."""


async def prepare_queues(links: Links, *, service: str, queues: Iterable[str],
                         dead_letter_exchange: str,
                         retry_delays: Callable[[str], Iterable[float]]) -> None:
    """Check that ``queues`` and ``dead_letter_exchange`` exist; declare the retry queues."""
    queues = tuple(queues)
    for queue in queues:
        try:
            await links.check_queue(queue)
        except NotFound as exc:
            raise MissingQueue(f"{service}: queue {queue!r} does not exist "
                               "(mcp-router apply declares the topology)") from exc
    try:
        await links.check_exchange(dead_letter_exchange)
    except NotFound as exc:
        raise MissingQueue(f"{service}: dead-letter exchange "
                           f"{dead_letter_exchange!r} does not exist "
                           "(mcp-router apply declares the topology)") from exc
    await declare_queues(links.consume, tuple(
        Topology().retry_queue(retry_queue_name(queue, delay), delay, target=queue)
        for queue in queues for delay in retry_delays(queue)))
