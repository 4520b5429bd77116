"""One channel of a ``Link``: consuming with acks, publishing with confirms.

It offers what ``router.broker.consume.ConsumeLoop`` calls on aiormq's channel
(``basic_consume``, ``basic_cancel``, ``basic_ack``, ``basic_nack``,
``basic_reject``, ``is_closed``), so one consume loop serves both, and
``publish``, which returns once the broker confirmed the copy.  Acks are written
at once, without waiting for anything: the link sends them with the frames of
the same loop turn.  Confirms are matched by delivery tag (``multiple``
covers every tag up to it); a ``basic.return`` is matched by ``message_id``,
which the publishing pool keeps unique per channel among copies in flight, and
fails its copy as ``Unroutable`` when its confirm arrives.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import pamqp.exceptions
from pamqp import commands, header

from router.broker import frames
from router.broker.failures import failure_of
from router.broker.propwire import encode_properties
from router.core.envelope import Properties
from router.errors import ChannelGone, NoAnswer, Refused, RouterError, Unroutable, Unsendable

__all__ = ["ConsumeOk", "Delivery", "LinkChannel", "broker_error"]

_tags = itertools.count(1)
SWEEP = 0.5  # seconds between looks for overdue confirms
BYE = commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)


def broker_error(code: int, text: str, what: str) -> RouterError:
    """What a ``channel.close`` or ``connection.close`` from the broker means."""
    kind = pamqp.exceptions.CLASS_MAPPING.get(code)
    failure = failure_of(kind(code, text)) if kind is not None else None
    if isinstance(failure, RouterError):
        return failure
    return ChannelGone(f"{what} closed by the broker: {code} {text}")


@dataclass(slots=True)
class Delivery:
    """A delivered message as ``router.broker.converter.envelope_of`` reads it."""

    delivery: Any  # frames.Deliver, or pamqp's Basic.Deliver when the fast read declined
    header: header.ContentHeader
    body: bytes

    @property
    def delivery_tag(self) -> int:
        return int(self.delivery.delivery_tag)


@dataclass(frozen=True, slots=True)
class ConsumeOk:
    consumer_tag: str  # as aiormq's ConsumeOk has it


Callback = Callable[[Delivery], Coroutine[Any, Any, None]]


class Wire(Protocol):
    """The link under a channel: where its frames go (``router.broker.amqplink.Link``)."""

    frame_max: int

    def write(self, data: bytes) -> None: ...


class LinkChannel:
    """See the module docstring; made by ``Link.channel``."""

    def __init__(self, link: Wire, number: int, release: Callable[[int], None]) -> None:
        # ``release`` frees the channel's number on the link: only once the broker's side
        # is closed too (close-ok sent or received), or a reopened number ends the link
        # (504 CHANNEL_ERROR "second 'channel.open' seen").
        self._link, self.number, self._release = link, number, release
        self._loop = asyncio.get_running_loop()
        self._calls: deque[asyncio.Future[Any]] = deque()
        self._content: tuple[Any, list[Any]] | None = None  # method, [header, chunks, left]
        self._consumers: dict[str, Callback] = {}
        self._tag = 0
        # delivery tag -> (its confirm, message_id, deadline on the loop's clock)
        self._confirms: dict[int, tuple[asyncio.Future[None], str, float]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._returned: dict[str, str] = {}
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[BaseException], None]] = []

    def method(self, payload: bytes) -> None:
        index = payload[:4]
        if index in (frames.ACK_INDEX, frames.NACK_INDEX):
            tag, multiple = frames.confirm(payload)
            self._confirmed(tag, multiple, ok=index == frames.ACK_INDEX)
            return
        value = frames.method(payload)
        match value:
            case frames.Deliver() | commands.Basic.Deliver() | commands.Basic.Return():
                self._content = (value, [None, [], 0])
            case commands.Channel.Close():
                self._link.write(frames.method_frame(self.number, commands.Channel.CloseOk()))
                self.closed_by(broker_error(value.reply_code or 0, value.reply_text or "",
                                            "channel"))
                self._release(self.number)
            case commands.Channel.CloseOk():
                self.closed_by(ChannelGone("channel closed"))
                self._release(self.number)
            case commands.Basic.Cancel():  # the queue went (consumer_cancel_notify)
                self._consumers.pop(value.consumer_tag or "", None)
                self._link.write(frames.method_frame(self.number, BYE))  # released at close-ok
                self.closed_by(ChannelGone(f"the broker cancelled consumer {value.consumer_tag}"))
            case commands.Channel.Flow():
                self._link.write(frames.method_frame(
                    self.number, commands.Channel.FlowOk(active=value.active)))
            case _:
                if self._calls:
                    call = self._calls.popleft()
                    if not call.done():
                        call.set_result(value)

    def content(self, kind: int, payload: bytes) -> None:
        if self._content is None:
            return  # content after a method we do not keep (none is sent)
        parts = self._content[1]
        if kind == frames.HEADER:
            parts[0] = frames.content_header(payload)
            parts[2] = parts[0].body_size
        else:
            parts[1].append(payload)
            parts[2] -= len(payload)
        if parts[2] <= 0:
            self._complete()

    def _complete(self) -> None:
        if self._content is None:
            return
        value, (head, chunks, _) = self._content
        self._content = None
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if isinstance(value, commands.Basic.Return):
            key = head.properties.message_id or ""
            self._returned[key] = f"{value.reply_code} {value.reply_text} (exchange " \
                f"{value.exchange!r}, routing key {value.routing_key!r})"
            return
        callback = self._consumers.get(value.consumer_tag)
        if callback is not None:
            self._loop.create_task(callback(Delivery(value, head, body)))

    def _confirmed(self, tag: int, multiple: bool, *, ok: bool) -> None:
        confirms = self._confirms
        if not multiple:
            entry = confirms.pop(tag, None)
            if entry is not None:
                self._settle(*entry, ok=ok)
            return
        while confirms:
            first = next(iter(confirms))
            if first > tag:
                break
            self._settle(*confirms.pop(first), ok=ok)

    def _settle(self, future: asyncio.Future[None], message_id: str, _deadline: float, *,
                ok: bool) -> None:
        returned = self._returned.pop(message_id, None) if self._returned else None
        if future.done():
            return
        if returned is not None:
            future.set_exception(Unroutable(f"returned by the broker: {returned}"))
        elif not ok:
            future.set_exception(Refused(
                "negatively confirmed (basic.nack) by the broker: a queue it reaches refused "
                "it (full with reject-publish, or unavailable)"))
        else:
            future.set_result(None)

    def closed_by(self, error: BaseException) -> None:
        """The channel is gone: fail what waits on it, once."""
        if self._error is not None:
            return
        self._error = error
        for future, _, _ in self._confirms.values():
            if not future.done():
                future.set_exception(error)
        self._confirms.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
        while self._calls:
            call = self._calls.popleft()
            if not call.done():
                call.set_exception(error)
        for callback in self._callbacks:
            callback(error)

    @property
    def is_closed(self) -> bool:
        return self._error is not None

    def on_close(self, callback: Callable[[BaseException], None]) -> None:
        if self._error is not None:
            callback(self._error)
        else:
            self._callbacks.append(callback)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    async def call(self, value: Any) -> Any:
        """Send a synchronous method and return the broker's reply."""
        self._check()
        reply: asyncio.Future[Any] = self._loop.create_future()
        self._calls.append(reply)
        self._link.write(frames.method_frame(self.number, value))
        return await reply

    async def basic_consume(self, queue: str, consumer_callback: Callback,
                            arguments: dict[str, Any] | None = None) -> ConsumeOk:
        tag = f"mcp-router.{self.number}.{next(_tags)}"
        # deliveries may come in the same read as the consume-ok: registered before
        self._consumers[tag] = consumer_callback
        try:
            await self.call(commands.Basic.Consume(queue=queue, consumer_tag=tag,
                                                   arguments=arguments or {}))
        except BaseException:
            self._consumers.pop(tag, None)
            raise
        return ConsumeOk(tag)

    async def basic_cancel(self, consumer_tag: str) -> None:
        await self.call(commands.Basic.Cancel(consumer_tag=consumer_tag))
        self._consumers.pop(consumer_tag, None)

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self._check()
        self._link.write(frames.ack(self.number, delivery_tag, multiple=multiple))

    async def basic_nack(self, delivery_tag: int, multiple: bool = False,
                         requeue: bool = True) -> None:
        self._check()
        self._link.write(frames.nack(self.number, delivery_tag, multiple=multiple,
                                     requeue=requeue))

    async def basic_reject(self, delivery_tag: int, *, requeue: bool = True) -> None:
        self._check()
        self._link.write(frames.reject(self.number, delivery_tag, requeue=requeue))

    async def publish(self, to: frames.Publish, body: bytes, properties: Properties, *,
                      within: float) -> None:
        """Publish mandatory and wait for the broker's confirm (``DeliveryFailed``, or the
        channel's failure, if there is none)."""
        self._check()
        try:
            data = frames.publish(self.number, to, encode_properties(properties), body,
                                  self._link.frame_max)
        except (ValueError, TypeError, OverflowError, AttributeError, struct.error,
                pamqp.exceptions.PAMQPException) as exc:
            raise Unsendable(f"cannot be encoded: {type(exc).__name__}: {str(exc)[:200]}") \
                from exc
        self._tag += 1
        confirmed: asyncio.Future[None] = self._loop.create_future()
        self._confirms[self._tag] = (confirmed, properties.message_id or "",
                                     self._loop.time() + within)
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(SWEEP, self._sweep)
        self._link.write(data)
        await confirmed

    def _sweep(self) -> None:
        """Fail the copies whose confirm is overdue (one timer a channel, not one a copy)."""
        now = self._loop.time()
        overdue = [tag for tag, (_, _, deadline) in self._confirms.items() if deadline <= now]
        for tag in overdue:
            future = self._confirms.pop(tag)[0]
            if not future.done():
                future.set_exception(NoAnswer("no publisher confirm in the time allowed"))
        self._sweeper = self._loop.call_later(SWEEP, self._sweep) if self._confirms else None

    async def close(self, within: float = 5.0) -> None:
        if self._error is not None:
            return
        self._link.write(frames.method_frame(self.number, BYE))
        closed: asyncio.Future[None] = self._loop.create_future()

        def done(_exc: BaseException) -> None:
            if not closed.done():
                closed.set_result(None)
        self.on_close(done)
        try:
            await asyncio.wait_for(closed, within)
        except TimeoutError:
            self.closed_by(ChannelGone("channel closed"))
