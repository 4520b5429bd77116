"""Consuming the ingress queue: many messages in flight, acks batched.

``Acker`` settles deliveries of one channel.  Completed deliveries at the head
of the delivery order are acked together with ``multiple=True`` (one frame for
many messages); completions behind a slow message are acked one by one so a
slow message never holds the prefetch window closed.  Requeues are sent as
``basic.nack(requeue=True)`` before any multiple-ack that would cover them, and
count toward the quorum queue's delivery limit, which is how a message that
keeps failing ends in the dead-letter queue instead of looping forever.  A
delivery whose dead letter cannot even be encoded is rejected without requeue
(``basic.reject``), so the queue's own dead-lettering takes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import aiormq.abc
import aiormq.exceptions

from router.broker.settle import Verdict

__all__ = ["Acker"]

log = logging.getLogger("router.consume")


class Acker:
    """Batches acks of one consuming channel; call ``run`` in the task group."""

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self._channel = channel
        self._order: deque[int] = deque()
        self._done: dict[int, Verdict] = {}
        self._wake = asyncio.Event()
        self._closed = False

    def started(self, tag: int) -> None:
        """Record a delivery, in delivery order."""
        self._order.append(tag)

    def finished(self, tag: int, verdict: Verdict) -> None:
        """Record how a delivery is to be settled; the flush happens soon after."""
        self._done[tag] = verdict
        self._wake.set()

    @property
    def unsettled(self) -> int:
        return len(self._order)

    async def flush(self) -> None:
        """Send every settlement recorded so far."""
        if not self._done:
            return
        head_last: int | None = None
        requeue: list[int] = []
        reject: list[int] = []
        while self._order and self._order[0] in self._done:
            tag = self._order.popleft()
            verdict = self._done.pop(tag)
            if verdict is Verdict.REQUEUE:
                requeue.append(tag)
            elif verdict is Verdict.REJECT:
                reject.append(tag)
            else:
                head_last = tag
        singles = list(self._done.items())
        self._done.clear()
        if singles:
            settled = {tag for tag, _ in singles}
            self._order = deque(t for t in self._order if t not in settled)
        requeue.extend(tag for tag, verdict in singles if verdict is Verdict.REQUEUE)
        reject.extend(tag for tag, verdict in singles if verdict is Verdict.REJECT)
        for tag in requeue:
            await self._channel.basic_nack(tag, multiple=False, requeue=True)
        for tag in reject:  # before a multiple ack could cover it
            await self._channel.basic_reject(tag, requeue=False)
        if head_last is not None:
            await self._channel.basic_ack(head_last, multiple=True)
        for tag, verdict in singles:
            if verdict is Verdict.ACK:
                await self._channel.basic_ack(tag)

    async def run(self) -> None:
        """Flush whenever settlements arrive, coalescing those of one loop turn.

        Returns after ``close`` with everything flushed, or when the channel is
        gone (the broker then requeues whatever was not yet acked).
        """
        try:
            while not self._closed:
                await self._wake.wait()
                self._wake.clear()
                await asyncio.sleep(0)  # let completions of this turn join the batch
                await self.flush()
            await self.flush()
        except (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError,
                ConnectionError) as exc:
            log.warning("cannot settle deliveries, the channel is gone: %s", exc)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
