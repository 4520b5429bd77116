"""The one consume loop (``router.broker.consume.ConsumeLoop``) against a fake channel."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from router.broker.consume import ConsumeLoop, Verdict


class _Channel:
    """The few basic.* methods the loop calls, recorded."""

    def __init__(self) -> None:
        self.callback: Callable[[Any], Awaitable[None]] | None = None
        self.acked: list[tuple[int, bool]] = []
        self.requeued: list[int] = []
        self.cancelled = False
        self.is_closed = False
        self.tasks: set[asyncio.Future[None]] = set()
        self.sent: list[str] = []  # every settlement and the cancel, in order

    async def basic_consume(self, _queue: str, callback: Callable[[Any], Awaitable[None]]
                            ) -> SimpleNamespace:
        self.callback = callback
        return SimpleNamespace(consumer_tag="ctag")

    async def basic_cancel(self, _tag: str) -> None:
        self.cancelled = True
        self.sent.append("cancel")

    async def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.acked.append((tag, multiple))
        self.sent.append(f"ack {tag}")

    async def basic_nack(self, tag: int, multiple: bool = False, requeue: bool = True) -> None:
        self.requeued.append(tag)
        self.sent.append(f"nack {tag}")

    async def basic_reject(self, tag: int, requeue: bool = False) -> None:
        raise AssertionError("not expected")

    async def deliver(self, tag: int) -> None:
        """As aiormq does: every delivery's callback runs in a task of its own."""
        assert self.callback is not None
        self.tasks.add(asyncio.ensure_future(self.callback(SimpleNamespace(delivery_tag=tag))))


async def _run(handle: Callable[[Any], Awaitable[Verdict]], deliveries: int,
               drain_timeout: float = 1.0) -> _Channel:
    channel, stop = _Channel(), asyncio.Event()
    loop = ConsumeLoop(channel, "q", handle, drain_timeout=drain_timeout)  # type: ignore[arg-type]  # a fake channel
    running = asyncio.create_task(loop.run(stop))
    await loop.consuming.wait()
    for tag in range(1, deliveries + 1):
        await channel.deliver(tag)
    await asyncio.sleep(0)
    stop.set()
    await running
    return channel


async def test_every_delivery_is_settled_with_its_handlers_verdict() -> None:
    """ACKs are acked (batched from the head), REQUEUEs nacked with requeue first."""
    async def handle(message: Any) -> Verdict:
        return Verdict.REQUEUE if message.delivery_tag == 2 else Verdict.ACK

    channel = await _run(handle, 3)

    assert channel.requeued == [2]
    assert channel.acked == [(3, True)]  # one frame for 1 and 3; 2 was nacked first
    assert channel.cancelled


async def test_stopping_waits_for_the_deliveries_in_flight() -> None:
    """A handler still running when stop comes finishes, and its delivery is acked."""
    release = asyncio.Event()

    async def handle(_message: Any) -> Verdict:
        await release.wait()
        return Verdict.ACK

    asyncio.get_running_loop().call_soon(release.set)
    channel = await _run(handle, 2)

    assert sorted(tag for tag, _ in channel.acked)[-1] == 2
    assert channel.requeued == []


async def test_a_delivery_past_the_drain_timeout_is_cancelled_and_requeued() -> None:
    """Draining is bounded: what still runs is cancelled and goes back to the queue."""
    async def handle(_message: Any) -> Verdict:
        await asyncio.Event().wait()  # never finishes
        return Verdict.ACK

    channel = await _run(handle, 1, drain_timeout=0.01)

    assert channel.requeued == [1]
    assert channel.acked == []


async def test_a_handler_that_raises_requeues_its_delivery() -> None:
    """An unexpected exception is logged and the delivery requeued, the loop goes on."""
    async def handle(message: Any) -> Verdict:
        if message.delivery_tag == 1:
            raise RuntimeError("bug")
        return Verdict.ACK

    channel = await _run(handle, 2)

    assert channel.requeued == [1]
    assert [tag for tag, _ in channel.acked] == [2]


async def test_the_consumer_is_cancelled_only_after_the_last_ack() -> None:
    """cancel-ok is the broker's word that the queue took the acks before it: a quorum
    queue's channel that is behind drops the acks it kept when it closes (RabbitMQ
    #10327), so the cancel goes after every ack of the drain, right before the close."""
    channel, stop, release = _Channel(), asyncio.Event(), asyncio.Event()

    async def handle(_message: Any) -> Verdict:
        await release.wait()
        return Verdict.ACK

    loop = ConsumeLoop(channel, "q", handle, drain_timeout=1.0)  # type: ignore[arg-type]  # a fake channel
    running = asyncio.create_task(loop.run(stop))
    await loop.consuming.wait()
    for tag in (1, 2, 3):
        await channel.deliver(tag)
    stop.set()
    await loop.stopping.wait()
    release.set()
    await running

    assert channel.sent == ["ack 3", "cancel"]


async def test_a_delivery_after_stop_is_not_handled_and_requeued_after_the_cancel() -> None:
    """What arrives while the loop drains waits, unhandled, for the cancel (requeued
    before it, it would only come back to this consumer), then goes back to the queue."""
    channel, stop = _Channel(), asyncio.Event()
    release, handled = asyncio.Event(), []

    async def handle(message: Any) -> Verdict:
        handled.append(message.delivery_tag)
        await release.wait()
        return Verdict.ACK

    loop = ConsumeLoop(channel, "q", handle, drain_timeout=1.0)  # type: ignore[arg-type]  # a fake channel
    running = asyncio.create_task(loop.run(stop))
    await loop.consuming.wait()
    await channel.deliver(1)
    stop.set()
    await loop.stopping.wait()
    await channel.deliver(2)  # in flight on the wire when stop came
    release.set()
    await running

    assert handled == [1]
    assert channel.sent == ["ack 1", "cancel", "nack 2"]
