"""The router's own AMQP connection for its hot path: the ingress consumer and the copies.

aiormq spends most of the router's time per message: a lock, a write queue, a
countdown, futures and a task for every frame it sends or reads.  A ``Link``
is an ``asyncio.Protocol`` instead: frames read in ``data_received``
(``router.broker.frames``), frames written into one buffer flushed once per
loop turn (a hundred publishes and acks go in one ``write``, and the broker
reads them in one go too: it then spends less than half as long per
message), confirms matched to publishes by delivery tag.  Everything else
(declaring, the control exchange, the tools, the SDK) keeps aio-pika.

A link fails whole: a lost socket, a ``connection.close`` from the broker or
missed heartbeats fail every channel's pending calls with ``ChannelGone`` and
run the close callbacks; the service then starts a new session.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import aio_pika
from pamqp import commands

from router.broker import frames, wire
from router.broker.amqp import broker_urls, redact
from router.broker.linkchannel import LinkChannel, broker_error
from router.errors import BrokerUnavailable, ChannelGone, NoAnswer, RouterError

__all__ = ["Link", "open_link"]

PRODUCT = "mcp-router"
CAPABILITIES: dict[str, Any] = {
    "publisher_confirms": True, "consumer_cancel_notify": True, "basic.nack": True,
    "connection.blocked": True, "authentication_failure_close": True, "per_consumer_qos": True}
BYE = commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)


class Link(asyncio.Protocol):
    """One AMQP connection; ``open_link`` makes one that has finished its handshake."""

    def __init__(self, credentials: tuple[str, str], vhost: str, name: str,
                 heartbeat: int) -> None:
        self._credentials, self._vhost, self.name = credentials, vhost, name
        self._heartbeat = heartbeat
        self._loop = asyncio.get_running_loop()
        self._cutter = frames.FrameCutter()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._channels: dict[int, LinkChannel] = {}
        self._callbacks: list[Callable[[BaseException], None]] = []
        self._ticker: asyncio.TimerHandle | None = None
        self._received = time.monotonic()
        self.opened: asyncio.Future[None] = self._loop.create_future()
        self.closed: asyncio.Future[BaseException] = self._loop.create_future()
        self.unblocked = asyncio.Event()
        self.unblocked.set()
        self.frame_max = frames.FRAME_MAX

    # -- the protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream, as create_connection gives (uvloop's is no asyncio.Transport subclass)
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(b"AMQP\x00\x00\x09\x01")

    def data_received(self, data: bytes) -> None:
        self._received = time.monotonic()
        try:
            for kind, number, payload in self._cutter.feed(data):
                if kind == frames.METHOD:
                    self._method(number, payload)
                elif kind in (frames.HEADER, frames.BODY):
                    channel = self._channels.get(number)
                    if channel is not None:
                        channel.content(kind, payload)
        except frames.FrameError as exc:
            self.fail(ChannelGone(f"the broker's stream broke: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        why = f"connection to the broker lost: {exc}" if exc else "connection to the broker closed"
        self._fail_all(ChannelGone(why))

    # -- writing -----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data``; everything queued in one loop turn leaves in one write."""
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        if self._transport is not None and not self._transport.is_closing() and self._out:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    # -- methods -----------------------------------------------------------------------

    def _method(self, number: int, payload: bytes) -> None:
        if number:
            channel = self._channels.get(number)
            if channel is not None:
                channel.method(payload)
            return
        value = frames.method(payload)
        match value:
            case commands.Connection.Start():
                user, password = self._credentials
                self.write(frames.method_frame(0, commands.Connection.StartOk(
                    client_properties={"product": PRODUCT, "connection_name": self.name,
                                       "capabilities": CAPABILITIES},
                    mechanism="PLAIN", response=f"\x00{user}\x00{password}")))
            case commands.Connection.Tune():
                self._tune(value)
            case commands.Connection.OpenOk():
                if not self.opened.done():
                    self.opened.set_result(None)
            case commands.Connection.Close():
                self.write(frames.method_frame(0, commands.Connection.CloseOk()))
                self.fail(broker_error(value.reply_code or 0, value.reply_text or "",
                                       "connection"))
            case commands.Connection.CloseOk():
                self.fail(ChannelGone("connection closed"))
            case commands.Connection.Blocked():
                self.unblocked.clear()
            case commands.Connection.Unblocked():
                self.unblocked.set()

    def _tune(self, tune: commands.Connection.Tune) -> None:
        self.frame_max = min(tune.frame_max or frames.FRAME_MAX, frames.FRAME_MAX)
        offered = tune.heartbeat or 0
        self._heartbeat = min(self._heartbeat, offered) if offered and self._heartbeat \
            else self._heartbeat or offered
        self.write(frames.method_frame(0, commands.Connection.TuneOk(
            channel_max=tune.channel_max, frame_max=self.frame_max, heartbeat=self._heartbeat)))
        self.write(frames.method_frame(0, commands.Connection.Open(virtual_host=self._vhost)))
        if self._heartbeat:
            self._ticker = self._loop.call_later(self._heartbeat / 2, self._tick)

    def _tick(self) -> None:
        if time.monotonic() - self._received > 2 * self._heartbeat:
            self.fail(NoAnswer(f"no heartbeat from the broker for {2 * self._heartbeat}s"))
            return
        self.write(frames.BEAT_FRAME)
        self._ticker = self._loop.call_later(self._heartbeat / 2, self._tick)

    # -- channels and life -------------------------------------------------------------

    async def channel(self, *, confirms: bool = False, prefetch: int = 0) -> LinkChannel:
        """A new open channel (with publisher confirms, with a prefetch window)."""
        if self.closed.done():
            raise self.closed.result()
        number = next(n for n in range(1, len(self._channels) + 2) if n not in self._channels)
        channel = self._channels[number] = LinkChannel(self, number, self._forget)
        await channel.call(commands.Channel.Open())
        if confirms:
            await channel.call(commands.Confirm.Select())
        if prefetch:
            await channel.call(commands.Basic.Qos(prefetch_count=prefetch))
        return channel

    def _forget(self, number: int) -> None:
        self._channels.pop(number, None)

    @property
    def is_closed(self) -> bool:
        return self.closed.done()

    def on_close(self, callback: Callable[[BaseException], None]) -> None:
        """Call ``callback`` with the reason once the link is gone (at once if it is)."""
        if self.closed.done():
            callback(self.closed.result())
        else:
            self._callbacks.append(callback)

    def fail(self, error: BaseException) -> None:
        """End the link: every pending call fails with ``error``."""
        self._flush()
        if self._transport is not None:
            self._transport.close()
        self._fail_all(error)

    def _fail_all(self, error: BaseException) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if not self.opened.done():
            self.opened.set_exception(error)
        for channel in list(self._channels.values()):
            channel.closed_by(error)
        if not self.closed.done():
            self.closed.set_result(error)
            for callback in self._callbacks:
                callback(error)

    async def close(self, within: float = 5.0) -> None:
        """Say goodbye (``connection.close``), bounded in time."""
        if self.closed.done():
            return
        self.write(frames.method_frame(0, BYE))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), within)
        self.fail(ChannelGone("connection closed"))


async def open_link(url: str | Sequence[str], name: str, *, heartbeat: int,
                    within: float) -> Link:
    """A link to the first node of ``url`` (one URL, or a cluster's, comma-separated) that
    answers, its handshake done; ``BrokerUnavailable`` naming every node's failure.
    ``heartbeat`` is the interval asked for, in seconds (the broker's, if lower, wins;
    0 takes the broker's)."""
    wire.install()  # before the first frame: no delivery can end this link
    failures = []
    for one in broker_urls(url):
        try:
            return await _open_one(one, name, heartbeat, within)
        except BrokerUnavailable as exc:
            failures.append(str(exc))
    raise BrokerUnavailable("; ".join(failures) or "no broker address given")


def _tls(query: Mapping[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=query.get("cafile"))
    if query.get("certfile"):
        context.load_cert_chain(query["certfile"], query.get("keyfile"))
    if query.get("no_verify_ssl") == "1":
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


async def _open_one(url: str, name: str, heartbeat: int, within: float) -> Link:
    parsed = aio_pika.connection.make_url(url)
    tls = parsed.scheme == "amqps"
    vhost = parsed.path[1:] if len(parsed.path) > 1 else "/"
    credentials = (parsed.user or "guest", parsed.password or "guest")
    loop = asyncio.get_running_loop()
    link: Link | None = None
    try:
        async with asyncio.timeout(within):
            _, link = await loop.create_connection(
                lambda: Link(credentials, vhost, name, heartbeat),
                parsed.host or "localhost", parsed.port or (5671 if tls else 5672),
                ssl=_tls(parsed.query) if tls else None)
            await link.opened
            return link
    except (OSError, TimeoutError, RouterError) as exc:  # refused, reset, timed out, a 403
        if link is not None:
            link.fail(ChannelGone("not opened"))
        why = f"no answer within {within:g}s" if isinstance(exc, TimeoutError) \
            else str(exc) or type(exc).__name__
        raise BrokerUnavailable(f"cannot connect to {redact(url)}: {why}") from exc
