"""The router's own AMQP link (``router.broker.amqplink``, ``linkchannel``) on the real broker.

Handshake and name, publishing with confirms (and each way a confirm can fail:
returned, nacked, a missing exchange, a lost socket, no answer), consuming
back with every property intact, and the faults a socket can have, made by a
``TcpProxy`` between the link and the broker.  Every entity is the test's own
(its ``prefix``) and deleted after it.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest

from router.broker import frames
from router.broker.amqplink import Link, open_link
from router.broker.consume import ConsumeLoop
from router.broker.converter import envelope_of
from router.broker.linkchannel import Delivery, LinkChannel
from router.broker.publish import MISSING_EXCHANGE_BACKOFF, ChannelPool
from router.core.deliverysteps import Verdict
from router.core.envelope import Properties
from router.errors import (
    BrokerUnavailable,
    ChannelGone,
    NoAnswer,
    NotFound,
    Refused,
    Unroutable,
    Unsendable,
)
from tests.integration.conftest import AMQP_URL, Broker, free_port, rabbitmqctl
from tests.integration.tcpproxy import TcpProxy

pytestmark = pytest.mark.broker
WITHIN = 5.0  # seconds for a confirm where none of the test's faults is at play


@dataclass
class Entities:
    """Queues a test declares, deleted after it (the exchanges it names never exist)."""

    broker: Broker
    prefix: str
    queues: list[str] = field(default_factory=list)

    async def queue(self, suffix: str, **arguments: Any) -> str:
        name = f"{self.prefix}.{suffix}"
        self.queues.append(name)
        await self.broker.channel.declare_queue(name, arguments=arguments or None)
        return name


@pytest.fixture
async def entities(broker: Broker, prefix: str) -> AsyncIterator[Entities]:
    made = Entities(broker, prefix)
    try:
        yield made
    finally:
        await broker.delete([], made.queues)


@pytest.fixture
async def link(prefix: str) -> AsyncIterator[Link]:
    opened = await open_link(AMQP_URL, f"{prefix} link", heartbeat=30, within=WITHIN)
    try:
        yield opened
    finally:
        await opened.close(within=2.0)


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    tcp = TcpProxy(urlsplit(AMQP_URL.split(",")[0]).port or 5672)
    await tcp.start()
    try:
        yield tcp
    finally:
        tcp.blackhole(False)
        await tcp.close()


class Inbox:
    """Deliveries a ``LinkChannel`` consumer hands over, in order."""

    def __init__(self) -> None:
        self.got: asyncio.Queue[Delivery] = asyncio.Queue()

    async def __call__(self, delivery: Delivery) -> None:
        await self.got.put(delivery)

    async def next(self, within: float = WITHIN) -> Delivery:
        return await asyncio.wait_for(self.got.get(), within)


def closes(channel: LinkChannel | Link) -> asyncio.Future[BaseException]:
    """A future the channel's (or link's) close callback resolves with its reason."""
    reason: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    channel.on_close(lambda exc: None if reason.done() else reason.set_result(exc))
    return reason


def to(queue: str) -> frames.Publish:
    return frames.Publish("", queue)


def ids() -> str:
    return uuid.uuid4().hex


# -- the handshake -------------------------------------------------------------------------


async def test_a_link_opens_under_its_name_and_closes_cleanly(prefix: str) -> None:
    name = f"{prefix} named link"
    link = await open_link(AMQP_URL, name, heartbeat=30, within=WITHIN)
    assert not link.is_closed
    assert link.frame_max == frames.FRAME_MAX  # RabbitMQ offers 128 KiB; the link takes it
    rows = await asyncio.to_thread(rabbitmqctl, "-q", "list_connections", "name",
                                   "client_properties")
    (row,) = [line for line in rows.splitlines() if f'{{"connection_name","{name}"}}' in line]
    assert '{"product","mcp-router"}' in row
    assert '{"publisher_confirms",true}' in row
    closed = closes(link)

    started = time.monotonic()
    await link.close(within=5.0)

    assert time.monotonic() - started < 1.0  # the broker's close-ok, not the timeout
    assert isinstance(await closed, ChannelGone)
    assert link.closed.done()
    with pytest.raises(ChannelGone):
        await link.channel()


async def test_a_wrong_password_is_broker_unavailable_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        await open_link(AMQP_URL.replace("guest:guest", "guest:not-the-password"), "t wrong",
                        heartbeat=30, within=WITHIN)
    assert time.monotonic() - started < 2.0
    assert "ACCESS_REFUSED" in str(caught.value)
    assert "not-the-password" not in str(caught.value)  # the URL is redacted


async def test_a_dead_port_is_broker_unavailable_and_the_next_node_is_tried() -> None:
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="cannot connect to"):
        await open_link(dead, "t dead", heartbeat=30, within=WITHIN)
    assert time.monotonic() - started < 2.0

    link = await open_link(f"{dead},{AMQP_URL}", "t second node", heartbeat=30, within=WITHIN)
    try:
        assert not link.is_closed
    finally:
        await link.close()


# -- publishing and consuming ----------------------------------------------------------------

HEADERS: dict[str, Any] = {
    "text": "заказ 🐇", "small": -5, "short": 30000, "long": 2**31 + 1, "longlong": -(2**62),
    "yes": True, "no": False, "half": 0.5, "tenth": 0.1, "huge": 1e300,
    "price": Decimal("12.50"), "when": datetime(2026, 11, 24, 10, tzinfo=UTC), "nothing": None,
    "raw": b"\xff\x00raw", "array": bytearray(b"ab"),
    "nested": {"list": [1, "two", {"three": [3.0, None]}], "empty": {}}, "": "empty key",
}
PROPERTIES = Properties(
    content_type="application/json", content_encoding="identity", headers=HEADERS,
    delivery_mode=2, priority=7, correlation_id="corr-1", reply_to="replies",
    expiration="60000", message_id="m-1", timestamp=datetime(2026, 11, 24, 10, 0, 1, tzinfo=UTC),
    type="OrderCreated", user_id="guest", app_id="mcp-router tests")


def _as_received(value: Any) -> Any:
    """A header value as pamqp decodes what was sent (bytes come back as a byte array)."""
    if isinstance(value, bytes | bytearray):
        return bytearray(value)
    if isinstance(value, dict):
        return {k: _as_received(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_received(v) for v in value]
    return value


async def test_a_publish_is_confirmed_and_consumed_back_intact(link: Link,
                                                               entities: Entities) -> None:
    queue = await entities.queue("intact")
    body = "{\"order\": \"заказ\"}".encode()
    publisher = await link.channel(confirms=True)
    await publisher.publish(to(queue), body, PROPERTIES, within=WITHIN)
    consumer = await link.channel(prefetch=10)
    inbox = Inbox()
    ok = await consumer.basic_consume(queue, inbox)

    first = await inbox.next()

    assert first.body == body
    assert isinstance(first.delivery, frames.Deliver)  # the hot path's own read
    assert (first.delivery.consumer_tag, first.delivery.exchange, first.delivery.routing_key,
            first.delivery.redelivered) == (ok.consumer_tag, "", queue, False)
    envelope = envelope_of(first)
    assert envelope.defects == ()
    assert envelope.properties == Properties(**{
        **{name: getattr(PROPERTIES, name) for name in PROPERTIES.__slots__},
        "headers": _as_received(HEADERS)})

    await consumer.basic_nack(first.delivery_tag, requeue=True)
    again = await inbox.next()
    assert again.delivery.redelivered is True
    assert again.body == body
    assert envelope_of(again).properties == envelope.properties
    await consumer.basic_ack(again.delivery_tag)
    await consumer.basic_cancel(ok.consumer_tag)
    await consumer.close()
    assert await entities.broker.count(queue) == 0


async def test_a_rejected_delivery_leaves_the_queue(link: Link, entities: Entities) -> None:
    queue = await entities.queue("reject")
    publisher = await link.channel(confirms=True)
    await publisher.publish(to(queue), b"x", Properties(message_id="r"), within=WITHIN)
    consumer = await link.channel(prefetch=1)
    inbox = Inbox()
    await consumer.basic_consume(queue, inbox)

    await consumer.basic_reject((await inbox.next()).delivery_tag, requeue=False)

    await consumer.close()
    assert await entities.broker.count(queue) == 0


async def test_a_body_larger_than_a_frame_round_trips(link: Link, entities: Entities) -> None:
    queue = await entities.queue("large")
    body = os.urandom(3 * frames.FRAME_MAX + 17)
    publisher = await link.channel(confirms=True)
    await publisher.publish(to(queue), body, Properties(message_id="big", headers={"k": 1}),
                            within=WITHIN)
    consumer = await link.channel(prefetch=1)
    inbox = Inbox()
    await consumer.basic_consume(queue, inbox)

    got = await inbox.next()

    assert got.body == body
    assert got.header.body_size == len(body)
    assert envelope_of(got).properties.headers == {"k": 1}
    await consumer.basic_ack(got.delivery_tag)


async def test_an_unroutable_publish_is_unroutable_and_the_channel_goes_on(
        link: Link, entities: Entities) -> None:
    queue = await entities.queue("after-return")
    channel = await link.channel(confirms=True)

    with pytest.raises(Unroutable, match="NO_ROUTE"):
        await channel.publish(to(f"{entities.prefix}.nowhere"), b"x",
                              Properties(message_id="lost"), within=WITHIN)

    assert not channel.is_closed
    await channel.publish(to(queue), b"y", Properties(message_id="kept"), within=WITHIN)
    assert await entities.broker.count(queue) == 1


async def test_returns_find_their_own_publish_among_many_in_flight(
        link: Link, entities: Entities) -> None:
    """On one channel, every other publish unroutable (one with a body of several frames):
    exactly those fail, matched by message_id."""
    queue = await entities.queue("mixed")
    channel = await link.channel(confirms=True)
    nowhere = f"{entities.prefix}.nowhere"
    big = os.urandom(2 * frames.FRAME_MAX)

    results = await asyncio.gather(*(
        channel.publish(to(nowhere if i % 2 else queue), big if i == 5 else b"x",
                        Properties(message_id=f"m-{i}"), within=WITHIN) for i in range(40)),
        return_exceptions=True)

    assert [type(r) for r in results] == [type(None), Unroutable] * 20
    assert await entities.broker.count(queue) == 20


async def test_the_pool_keeps_copies_of_one_id_apart(link: Link, entities: Entities) -> None:
    """Copies with one message_id never share a channel in flight, so a return is never
    matched to its sibling's publish."""
    queue = await entities.queue("one-id")
    pool = ChannelPool(link, 2)
    nowhere = f"{entities.prefix}.nowhere"

    results = await asyncio.gather(*(
        pool.publish("", key, b"x", Properties(message_id="same"))
        for key in (nowhere, queue, nowhere, queue, queue)), return_exceptions=True)

    assert [type(r) for r in results] == [Unroutable, type(None), Unroutable, type(None),
                                          type(None)]
    assert await entities.broker.count(queue) == 3
    await pool.close()


async def test_what_cannot_be_encoded_is_unsendable_and_nothing_is_sent(
        link: Link, entities: Entities) -> None:
    queue = await entities.queue("unsendable")
    channel = await link.channel(confirms=True)

    with pytest.raises(Unsendable, match="cannot be encoded"):
        await channel.publish(to(queue), b"x", Properties(headers={"n": 2**64}), within=WITHIN)
    with pytest.raises(Unsendable):
        await channel.publish(frames.Publish("", "k" * 256), b"x", Properties(), within=WITHIN)

    await channel.publish(to(queue), b"y", Properties(message_id="ok"), within=WITHIN)
    assert await entities.broker.count(queue) == 1  # only the one that encodes


async def test_a_full_queue_that_rejects_publishes_is_refused(link: Link,
                                                              entities: Entities) -> None:
    queue = await entities.queue("full", **{"x-max-length": 0, "x-overflow": "reject-publish"})
    channel = await link.channel(confirms=True)

    with pytest.raises(Refused, match=r"basic\.nack"):
        await channel.publish(to(queue), b"x", Properties(message_id="n"), within=WITHIN)

    pool = ChannelPool(link, 2)
    with pytest.raises(Refused):
        await pool.publish("", queue, b"x", Properties(message_id="p"))
    assert not channel.is_closed


async def test_a_missing_exchange_closes_only_that_channel(link: Link, entities: Entities) -> None:
    queue = await entities.queue("beside-missing")
    channel = await link.channel(confirms=True)
    closed = closes(channel)

    with pytest.raises(NotFound, match="NOT_FOUND"):
        await channel.publish(frames.Publish(f"{entities.prefix}.missing", "k"), b"x",
                              Properties(message_id="m"), within=WITHIN)

    assert isinstance(await closed, NotFound)
    assert channel.is_closed
    assert not link.is_closed
    other = await link.channel(confirms=True)  # the number is free again, the link fine
    await other.publish(to(queue), b"y", Properties(message_id="y"), within=WITHIN)


async def test_the_pool_reports_a_missing_exchange_and_reopens_its_channel(
        link: Link, entities: Entities) -> None:
    queue = await entities.queue("pool-missing")
    missing = f"{entities.prefix}.missing"
    pool = ChannelPool(link, 1)  # one channel: the one the 404 closes must come back

    with pytest.raises(Unroutable, match="destination does not exist") as caught:
        await pool.publish(missing, "k", b"x", Properties(message_id="1"))
    assert isinstance(caught.value.__cause__, NotFound)
    with pytest.raises(Unroutable, match="not published"):  # for a moment, not even tried
        await pool.publish(missing, "k", b"x", Properties(message_id="2"))

    await pool.publish("", queue, b"y", Properties(message_id="3"))  # on a new channel
    await asyncio.sleep(MISSING_EXCHANGE_BACKOFF + 0.05)
    with pytest.raises(Unroutable, match="destination does not exist"):  # probed again
        await pool.publish(missing, "k", b"x", Properties(message_id="4"))
    await pool.publish("", queue, b"z", Properties(message_id="5"))
    assert await entities.broker.count(queue) == 2
    await pool.close()


async def test_a_missing_exchange_does_not_fail_its_neighbours_for_good(
        link: Link, entities: Entities) -> None:
    queue = await entities.queue("neighbours")
    pool = ChannelPool(link, 1)

    results = await asyncio.gather(
        pool.publish(f"{entities.prefix}.missing", "k", b"x", Properties(message_id="gone")),
        *(pool.publish("", queue, b"x", Properties(message_id=f"n-{i}")) for i in range(3)),
        return_exceptions=True)

    assert isinstance(results[0], Unroutable)
    neighbours = [r for r in results[1:] if r is not None]
    assert not any(isinstance(r, Unroutable) for r in neighbours), neighbours  # transient
    await pool.publish("", queue, b"x", Properties(message_id="right after"))
    await pool.close()


async def test_two_thousand_concurrent_publishes_are_all_confirmed(link: Link,
                                                                   entities: Entities) -> None:
    queue = await entities.queue("many")
    pool = ChannelPool(link, 4)
    messages = [(f"m-{i}", f"body {i}".encode()) for i in range(2000)]

    await asyncio.gather(*(pool.publish("", queue, body, Properties(message_id=message_id))
                           for message_id, body in messages))

    assert await entities.broker.count(queue) == 2000
    await pool.close()


async def test_two_consumers_on_one_link_get_their_large_bodies_whole(
        link: Link, entities: Entities) -> None:
    """Content frames of two channels arrive interleaved; each body is put together whole."""
    queues = [await entities.queue(f"whole-{n}") for n in range(2)]
    publisher = await link.channel(confirms=True)
    bodies = {q: [os.urandom(50_000 + 37_000 * i) for i in range(8)] for q in queues}
    await asyncio.gather(*(publisher.publish(to(q), body, Properties(message_id=f"{q}-{i}"),
                                             within=WITHIN)
                           for q in queues for i, body in enumerate(bodies[q])))
    inboxes = {q: Inbox() for q in queues}
    for q in queues:
        consumer = await link.channel(prefetch=20)
        await consumer.basic_consume(q, inboxes[q])

    for q in queues:
        got = [await inboxes[q].next() for _ in bodies[q]]
        assert [d.body for d in got] == bodies[q]
        assert [envelope_of(d).properties.message_id for d in got] == \
            [f"{q}-{i}" for i in range(8)]


@dataclass
class Recording:
    """A ``LinkChannel`` whose acks are noted on their way to it (the consume loop's view)."""

    channel: LinkChannel
    acks: list[tuple[int, bool]] = field(default_factory=list)

    @property
    def is_closed(self) -> bool:
        return self.channel.is_closed

    async def basic_consume(self, queue: str, consumer_callback: Any) -> Any:
        return await self.channel.basic_consume(queue, consumer_callback)

    async def basic_cancel(self, consumer_tag: str) -> None:
        await self.channel.basic_cancel(consumer_tag)

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.acks.append((delivery_tag, multiple))
        await self.channel.basic_ack(delivery_tag, multiple)

    async def basic_nack(self, delivery_tag: int, multiple: bool = False,
                         requeue: bool = True) -> None:
        await self.channel.basic_nack(delivery_tag, multiple, requeue)

    async def basic_reject(self, delivery_tag: int, *, requeue: bool = True) -> None:
        await self.channel.basic_reject(delivery_tag, requeue=requeue)


async def test_the_consume_loops_multiple_acks_reach_the_broker(link: Link,
                                                                entities: Entities) -> None:
    queue = await entities.queue("acked")
    pool = ChannelPool(link, 4)
    total = 600
    await asyncio.gather(*(pool.publish("", queue, b"x", Properties(message_id=str(i)))
                           for i in range(total)))
    channel = await link.channel(prefetch=100)
    recording = Recording(channel)
    handled = 0
    done, stop = asyncio.Event(), asyncio.Event()

    async def handle(_delivery: Any) -> Verdict:
        nonlocal handled
        handled += 1
        if handled == total:
            done.set()
        return Verdict.ACK

    loop = ConsumeLoop(recording, queue, handle, drain_timeout=5.0)
    running = asyncio.create_task(loop.run(stop))
    await asyncio.wait_for(done.wait(), 20)
    stop.set()
    await asyncio.wait_for(running, 10)
    await channel.close()  # what was not acked would now go back to the queue

    assert any(multiple for _, multiple in recording.acks)
    assert len(recording.acks) < total  # batched
    assert max(tag for tag, _ in recording.acks) == total
    assert await entities.broker.count(queue) == 0
    await asyncio.sleep(0.2)
    assert await entities.broker.count(queue) == 0  # and nothing came back later


async def test_stopping_the_consume_loop_loses_no_ack_to_a_quorum_queue(
        link: Link, entities: Entities) -> None:
    """Stopped with a window in flight, every other message requeued, then the link closed
    at once: the acked messages are gone for good, the others are back.  A quorum queue's
    channel 32 commands behind keeps later acks to itself and drops them when it closes
    (RabbitMQ #10327; here 100 nacks go just before the ack): the loop cancels the
    consumer only after its acks, and the cancel-ok says the queue took them."""
    queue = f"{entities.prefix}.drained"
    entities.queues.append(queue)
    await entities.broker.channel.declare_queue(queue, durable=True,
                                                arguments={"x-queue-type": "quorum"})
    total, window = 600, 200
    pool = ChannelPool(link, 4)
    await asyncio.gather(*(pool.publish("", queue, b"x", Properties(message_id=str(i)))
                           for i in range(total)))
    channel = await link.channel(prefetch=window)
    stop, full, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    handled: list[str] = []

    async def handle(delivery: Delivery) -> Verdict:
        handled.append(str(delivery.header.properties.message_id))
        nth = len(handled)
        if nth == window:
            full.set()
        await release.wait()
        return Verdict.ACK if nth % 2 else Verdict.REQUEUE  # every other one requeued

    loop = ConsumeLoop(channel, queue, handle, drain_timeout=10.0)
    running = asyncio.create_task(loop.run(stop))
    await asyncio.wait_for(full.wait(), 20)
    stop.set()
    await loop.stopping.wait()
    release.set()
    await asyncio.wait_for(running, 20)
    await link.close()  # right away, as the router does once drained

    acked = set(handled[::2])
    rest = {str(i) for i in range(total)} - acked
    back = await entities.broker.drain_ids(queue, rest, timeout=20)
    back += await entities.broker.drain(queue, idle=0.5)  # anything else there
    back_ids = [m.message_id for m in back]
    assert len(handled) == window  # what came after stop was not handled
    assert not acked & set(back_ids)  # an acked message never comes back
    assert sorted(back_ids) == sorted(rest)  # every other one is back, once


# -- the broker's own doing ------------------------------------------------------------------


async def test_the_broker_cancelling_the_consumer_closes_the_channel(
        link: Link, entities: Entities) -> None:
    queue = await entities.queue("cancelled")
    channel = await link.channel(prefetch=10)
    closed = closes(channel)
    ok = await channel.basic_consume(queue, Inbox())

    await entities.broker.channel.queue_delete(queue)

    reason = await asyncio.wait_for(closed, WITHIN)
    assert isinstance(reason, ChannelGone)
    assert ok.consumer_tag in str(reason)
    assert channel.is_closed
    with pytest.raises(ChannelGone):
        await channel.basic_ack(1)
    assert not link.is_closed


async def test_after_the_broker_cancelled_a_consumer_the_link_opens_channels(
        link: Link, entities: Entities) -> None:
    queue = await entities.queue("cancelled-then")
    other = await entities.queue("cancelled-other")
    channel = await link.channel(prefetch=10)
    closed = closes(channel)
    await channel.basic_consume(queue, Inbox())
    await entities.broker.channel.queue_delete(queue)
    await asyncio.wait_for(closed, WITHIN)

    again = await link.channel(confirms=True)
    await again.publish(to(other), b"x", Properties(message_id="x"), within=WITHIN)

    assert not link.is_closed


# -- the socket's faults, through a proxy ----------------------------------------------------


async def _via(proxy: TcpProxy, name: str, heartbeat: int = 30) -> Link:
    return await open_link(proxy.url, name, heartbeat=heartbeat, within=WITHIN)


async def _pending(channel: LinkChannel, queue: str, n: int) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(channel.publish(to(queue), b"x", Properties(message_id=ids()),
                                                 within=60)) for _ in range(n)]
    await asyncio.sleep(0.1)  # written, stuck in the proxy
    assert not any(task.done() for task in tasks)
    return tasks


async def _failures(tasks: list[asyncio.Task[None]], within: float = WITHIN) -> list[Any]:
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), within)
    return [type(result) for result in done]


async def test_a_socket_that_dies_fails_pending_publishes_with_channel_gone(
        proxy: TcpProxy, entities: Entities) -> None:
    queue = await entities.queue("cut")
    link = await _via(proxy, f"{entities.prefix} cut")
    channel = await link.channel(confirms=True)
    await channel.publish(to(queue), b"before", Properties(message_id="b"), within=WITHIN)
    link_closed, channel_closed = closes(link), closes(channel)
    proxy.blackhole()
    tasks = await _pending(channel, queue, 5)

    await proxy.close()

    assert await _failures(tasks) == [ChannelGone] * 5
    assert isinstance(await link_closed, ChannelGone)
    assert isinstance(await channel_closed, ChannelGone)
    assert link.is_closed
    with pytest.raises(ChannelGone):
        await channel.publish(to(queue), b"after", Properties(), within=WITHIN)


async def test_a_close_the_broker_never_answers_is_bounded_and_fails_what_waits(
        proxy: TcpProxy, entities: Entities) -> None:
    queue = await entities.queue("unanswered-close")
    link = await _via(proxy, f"{entities.prefix} unanswered close")
    channel = await link.channel(confirms=True)
    proxy.blackhole()
    tasks = await _pending(channel, queue, 3)

    started = time.monotonic()
    await link.close(within=0.5)

    assert 0.4 < time.monotonic() - started < 1.5
    assert await _failures(tasks) == [ChannelGone] * 3
    assert link.is_closed


async def test_a_confirm_that_never_comes_is_no_answer_after_within(
        proxy: TcpProxy, entities: Entities) -> None:
    """The sweep fails it (every 0.5 s); the confirm that comes late is ignored and the
    channel goes on."""
    queue = await entities.queue("paused")
    link = await _via(proxy, f"{entities.prefix} paused")
    try:
        channel = await link.channel(confirms=True)
        proxy.blackhole()
        started = time.monotonic()

        with pytest.raises(NoAnswer, match="no publisher confirm"):
            await channel.publish(to(queue), b"x", Properties(message_id="late"), within=1.0)

        assert 0.95 <= time.monotonic() - started < 2.0
        proxy.blackhole(False)
        await channel.publish(to(queue), b"y", Properties(message_id="next"), within=WITHIN)
        assert not channel.is_closed
        assert await entities.broker.count(queue) == 2  # the late one did land
    finally:
        await link.close()


async def test_a_half_open_socket_is_found_by_missed_heartbeats(
        proxy: TcpProxy, entities: Entities) -> None:
    queue = await entities.queue("half-open")
    link = await _via(proxy, f"{entities.prefix} half open", heartbeat=1)
    channel = await link.channel(confirms=True)
    link_closed = closes(link)
    proxy.sever()
    started = time.monotonic()
    tasks = await _pending(channel, queue, 2)

    reason = await asyncio.wait_for(link_closed, 6.0)

    assert isinstance(reason, NoAnswer)
    assert "heartbeat" in str(reason)
    assert 1.0 <= time.monotonic() - started < 4.0  # 2 x heartbeat, from the last byte heard
    assert await _failures(tasks) == [NoAnswer] * 2
