"""Consuming a queue: many messages in flight, acks batched, one loop for router and SDK.

``ConsumeLoop`` is the one consume loop: the acker runs in an
``asyncio.TaskGroup``, every delivery is handled in the task aiormq gives its
callback and settled with the ``Verdict`` its handler returns.  Stopping
handles no new delivery, lets the deliveries in flight finish for at most
``drain_timeout`` (then cancels them: they are requeued), flushes their acks,
and only then cancels the consumer; the deliveries that came after stop are
requeued once cancel-ok came (the broker sends nothing more after it).  The
cancel comes last because it is the one answer that says the queue took the
acks: a quorum queue's channel that has 32 commands in flight to the queue
keeps further acks and nacks to itself until the queue catches up, and drops
them if the channel closes first (RabbitMQ #10327: a routed message would come
back to the ingress).  The cancel is a synchronous command queued behind every
ack the channel passed on: once it is answered the queue has applied them, and
their notices, which reach the channel with the answer, make it pass on those
it kept, ahead of the close the client sends after cancel-ok.

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
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import aiormq.abc

from router.broker.amqp import Wrapper
from router.broker.converter import envelope_of
from router.broker.failures import translated
from router.core.counts import plural
from router.core.deliverysteps import Verdict  # settled values are the pure core's
from router.core.envelope import Envelope
from router.errors import BrokerFailure

__all__ = ["Acker", "Consumable", "ConsumeLoop", "Handle", "Verdict", "first_of", "tap"]

log = logging.getLogger("router.consume")

CANCEL_TIMEOUT = 5.0  # seconds for basic.cancel-ok
SETUP_TIMEOUT = 30.0  # seconds for basic.consume-ok


class Consumable(Protocol):
    """What a consume loop needs of a channel: the router's ``LinkChannel``, or aiormq's."""

    @property
    def is_closed(self) -> bool: ...

    def basic_consume(self, queue: str, consumer_callback: Any) -> Awaitable[Any]: ...

    def basic_cancel(self, consumer_tag: str) -> Awaitable[Any]: ...

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> Awaitable[None]: ...

    def basic_nack(self, delivery_tag: int, multiple: bool = False,
                   requeue: bool = True) -> Awaitable[None]: ...

    def basic_reject(self, delivery_tag: int, *, requeue: bool = True) -> Awaitable[None]: ...


# The delivery is the channel's own (``LinkChannel``'s ``Delivery``, aiormq's
# ``DeliveredMessage``): both carry ``delivery``, ``header``, ``body``, ``delivery_tag``.
Handle = Callable[[Any], Awaitable[Verdict]]


class Acker:
    """Batches acks of one consuming channel; call ``run`` in the task group."""

    def __init__(self, channel: Consumable) -> None:
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
                with translated():
                    await self.flush()
            with translated():
                await self.flush()
        except BrokerFailure as exc:
            log.warning("cannot settle deliveries, the channel is gone: %s", exc)

    def close(self) -> None:
        self._closed = True
        self._wake.set()


class ConsumeLoop:
    """Consumes one queue on one channel until stopped; see the module docstring."""

    def __init__(self, channel: Consumable, queue: str, handle: Handle, *,
                 drain_timeout: float, setup_timeout: float = SETUP_TIMEOUT) -> None:
        self.channel, self.queue, self.handle = channel, queue, handle
        self.drain_timeout, self.setup_timeout = drain_timeout, setup_timeout
        self.consuming = asyncio.Event()  # set once the broker confirmed the consumer
        self.stopping = asyncio.Event()  # set when stop came: later deliveries wait, unhandled
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._held: list[int] = []  # delivered after stop, handled by no one

    async def run(self, stop: asyncio.Event, lost: asyncio.Event | None = None) -> None:
        """Consume until ``stop``; return once every delivery received is settled.

        When ``lost`` is set (the connection went) or the channel closed, the
        deliveries in flight are cancelled at once instead: the broker requeues
        whatever was not acked, and no ack can reach it any more."""
        acker = Acker(self.channel)
        lost = lost if lost is not None else asyncio.Event()
        async with asyncio.TaskGroup() as group:
            acking = group.create_task(acker.run())
            with translated():
                ok = await asyncio.wait_for(
                    self.channel.basic_consume(self.queue, self._on_message(acker)),
                    self.setup_timeout)
            self.consuming.set()
            await first_of(acking, stop, lost)
            self.stopping.set()
            if lost.is_set() or acking.done():  # no ack can reach the broker any more
                acking.cancel()
                self._cancel_in_flight()
                return
            await self._drain()
            acker.close()  # its last flush settles what was handled
        await self._cancel(ok.consumer_tag)  # after the acks: see the module docstring
        await self._give_back(acker)

    def _on_message(self, acker: Acker) -> Callable[[Any], Coroutine[Any, Any, None]]:
        # aiormq already runs every delivery callback in a task of its own (bounded by
        # the prefetch window), so each delivery is handled right there: handing it on
        # to a task (or a pool of workers) of our own cost about 8% of throughput.
        async def on_message(message: Any) -> None:
            tag = message.delivery_tag
            if tag is None:
                return
            acker.started(tag)
            if self.stopping.is_set():  # after stop: requeued once the consumer is cancelled
                self._held.append(tag)
                return
            task = asyncio.current_task()  # aiormq calls back in a task: never None there
            if task is not None:
                self._in_flight.add(task)
            try:
                await self._settle(message, tag, acker)
            finally:
                if task is not None:
                    self._in_flight.discard(task)
        return on_message

    async def _settle(self, message: Any, tag: int,
                      acker: Acker) -> None:
        verdict = Verdict.REQUEUE  # also when cancelled: back to the queue
        try:
            verdict = await self.handle(message)
        except Exception:
            log.exception("unexpected error handling delivery %d from %r; requeued", tag,
                          self.queue)
        finally:
            acker.finished(tag, verdict)

    async def _cancel(self, consumer_tag: str | None) -> None:
        """Cancel the consumer and wait for cancel-ok (at most ``CANCEL_TIMEOUT``)."""
        if consumer_tag is None or self.channel.is_closed:
            return
        try:
            with translated():
                await asyncio.wait_for(self.channel.basic_cancel(consumer_tag), CANCEL_TIMEOUT)
        except (BrokerFailure, TimeoutError) as exc:
            log.warning("the consumer of %r was not cancelled (%s): the queue may not have "
                        "taken the last acks, and may deliver their messages again", self.queue,
                        str(exc) or f"no cancel-ok within {CANCEL_TIMEOUT:g}s")

    async def _give_back(self, acker: Acker) -> None:
        """Requeue the deliveries that came after stop; if that cannot reach the broker any
        more, closing the channel requeues them just the same."""
        for tag in self._held:
            acker.finished(tag, Verdict.REQUEUE)
        if self._held and not self.channel.is_closed:
            with contextlib.suppress(BrokerFailure), translated():
                await acker.flush()

    def _cancel_in_flight(self) -> None:
        for task in self._in_flight:
            task.cancel()

    async def _drain(self) -> None:
        """Wait for the deliveries in flight; after ``drain_timeout`` cancel them."""
        if not self._in_flight:
            return
        _done, late = await asyncio.wait(set(self._in_flight), timeout=self.drain_timeout)
        for task in late:
            task.cancel()
        if late:
            log.warning("%s from %r still in flight after %.0fs; they go back to the queue",
                        plural(len(late), "delivery", "deliveries"), self.queue, self.drain_timeout)
            await asyncio.wait(late)


async def first_of(task: asyncio.Task[Any], *events: asyncio.Event) -> None:
    """Return when one of ``events`` is set or ``task`` ended (the acker: its channel is
    gone).  A task that failed is its ``TaskGroup``'s to report, not this wait's."""
    waiting = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait({*waiting, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiting:
            waiter.cancel()


async def tap(channel: Wrapper, queue: str, take: Callable[[Envelope], Awaitable[None]], *,
              arguments: dict[str, Any] | None = None) -> None:
    """Consume ``queue``, acking each delivery on arrival and handing ``take`` its envelope
    as it arrived (no message id invented); the consumer lasts as long as ``channel``."""
    with translated():
        underlay = await channel.get_underlay_channel()

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        if message.delivery_tag is not None:
            with translated():
                await underlay.basic_ack(message.delivery_tag)
        await take(envelope_of(message, invent_id=False))

    with translated():
        await underlay.basic_consume(queue, on_message, arguments=arguments or {})
