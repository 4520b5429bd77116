"""Looking at the queues circuit breakers watch: depth and consumers, by passive declare.

A passive ``queue.declare`` answers with the queue's ready-message count and
consumer count, or closes the channel with 404 when the queue does not exist
(the channel is then reopened).  The watcher runs on the *consuming*
connection: a memory alarm blocks publishing connections, and a breaker should
still see a consumer come back during one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractConnection

from router.broker.failures import translated
from router.broker.publish import Sleep
from router.core.breakers import Breakers, QueueStatus
from router.errors import BrokerFailure, NoAnswer, NotFound

__all__ = ["LOOK_TIMEOUT", "REAL_TIME", "Looker", "Ticks", "watch_queues"]

log = logging.getLogger("router.queuewatch")

LOOK_TIMEOUT = 5.0  # seconds for one passive declare
IDLE_PAUSE = 1.0  # between looks at the configuration when nothing is watched


class Looker:
    """One channel for passive declares, reopened after a 404 closed it."""

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self.channel: AbstractChannel | None = None
        self.underlay: aiormq.abc.AbstractChannel | None = None

    async def look(self, queue: str) -> QueueStatus | None:
        """The queue's depth and consumers; None if it does not exist."""
        try:
            with translated():
                if self.underlay is None or self.underlay.is_closed:
                    self.channel = await self.connection.channel(publisher_confirms=False)
                    self.underlay = await self.channel.get_underlay_channel()
                ok = await self.underlay.queue_declare(queue, passive=True)
        except NotFound:
            return None
        return QueueStatus(int(ok.message_count or 0), int(ok.consumer_count or 0))

    async def close(self) -> None:
        if self.channel is not None and not self.channel.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.channel.close(), LOOK_TIMEOUT)


def _ignore(_queue: str, _status: QueueStatus | None, _now: float) -> None:
    """Nobody else wants to hear about the queues."""


@dataclass(frozen=True)
class Ticks:
    """The watch's sense of time: how it waits and what time it is (tests pass fakes)."""

    sleep: Sleep = asyncio.sleep
    clock: Callable[[], float] = time.monotonic


REAL_TIME = Ticks()


async def watch_queues(
        connection: AbstractConnection, breakers: Callable[[], Breakers], *,
        ticks: Ticks = REAL_TIME,
        loads: Callable[[], Mapping[str, float]] = dict,
        seen: Callable[[str, QueueStatus | None, float], None] = _ignore,
        ) -> None:
    """Tell the breakers what their queues look like, every ``check_every``, until cancelled.

    ``loads`` names more queues to look at, each with its interval (least_loaded
    routes), and ``seen`` hears about those.  Both are asked each round, so a
    reload takes effect.  A look that times out or fails leaves the breakers as
    they were; a closed connection ends the watcher quietly (the session
    notices it and ends as a whole).
    """
    looker = Looker(connection)
    try:
        while True:
            current = breakers()
            watched, wanted = current.watched(), loads()
            if not watched and not wanted:
                await ticks.sleep(IDLE_PAUSE)
                continue
            for queue in dict.fromkeys([*watched, *wanted]):
                if connection.is_closed:
                    return
                try:
                    with translated():
                        status = await asyncio.wait_for(looker.look(queue), LOOK_TIMEOUT)
                except NoAnswer:
                    log.warning("no answer about queue %r within %.0fs", queue, LOOK_TIMEOUT)
                    continue
                except BrokerFailure as exc:
                    log.warning("could not look at queue %r: %s", queue, exc)
                    looker.underlay = None
                    continue
                now = ticks.clock()
                if queue in watched:
                    current.observe(queue, status, now)
                if queue in wanted:
                    seen(queue, status, now)
            await ticks.sleep(min([rule.check_every for rules in watched.values() for rule in rules]
                            + list(wanted.values())))
    finally:
        await looker.close()
