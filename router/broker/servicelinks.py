"""A service's broker links (``router.sdk``): intake on one connection, publishing on another.

Guarantees: every channel opened through a ``Links`` is closed by
``close()``; ``send`` publishes mandatory on a confirming channel that raises
on returns, and either returns once the broker confirmed or raises
``DeliveryFailed``; every other failure leaves as a ``router.errors`` value
(``router.broker.failures``).  Intake and publishing use separate connections:
a memory alarm blocks publishing connections, and acks on them would stall
(STYLE.md).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from router.broker.amqp import close_quietly
from router.broker.encodable import wire_properties
from router.broker.failures import publishing, translated
from router.core.envelope import Properties

__all__ = ["CONFIRM_TIMEOUT", "Links", "connection_user", "ingress_exchange",
           "publish_persistent", "when_closed"]

CONFIRM_TIMEOUT = 30.0  # generous: a publish that timed out may still land, and is retried


def connection_user(connection: AbstractConnection) -> str:
    """The broker user ``connection`` authenticated as (aio-pika's default: guest)."""
    url = getattr(connection, "url", None)
    return getattr(url, "user", None) or "guest"


def when_closed(connection: AbstractConnection, lost: asyncio.Event) -> None:
    """Set ``lost`` when ``connection`` closes, for whatever reason."""
    connection.close_callbacks.add(lambda *_: lost.set())


async def ingress_exchange(connection: AbstractConnection, name: str) -> AbstractExchange:
    """Exchange ``name`` on a new confirming channel of ``connection`` that raises on returns
    (without it a returned mandatory message "succeeds", STYLE.md)."""
    with translated():
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        return await channel.get_exchange(name, ensure=False)


async def publish_persistent(exchange: AbstractExchange, routing_key: str, body: bytes,
                             properties: Properties, *, confirm_timeout: float | None) -> None:
    """Publish persistent and mandatory, stamped now; ``DeliveryFailed`` unless confirmed."""
    message = aio_pika.Message(
        body, content_type=properties.content_type, type=properties.type,
        message_id=properties.message_id, correlation_id=properties.correlation_id,
        app_id=properties.app_id, user_id=properties.user_id, timestamp=datetime.now(UTC),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=dict(properties.headers))
    with publishing():
        await exchange.publish(message, routing_key=routing_key, mandatory=True,
                               timeout=confirm_timeout)


class Links:
    """The service's channels: intake on one connection, publishing on another."""

    def __init__(self, consume: AbstractConnection, publish: AbstractConnection, *,
                 confirm_timeout: float = CONFIRM_TIMEOUT) -> None:
        self.consume, self.publish = consume, publish
        self.confirm_timeout = confirm_timeout
        self.user = connection_user(publish)  # RabbitMQ validates user_id against it
        self._confirming: aiormq.abc.AbstractChannel | None = None
        self._control: AbstractExchange | None = None
        self._checking: AbstractChannel | None = None  # passive declares; a 404 closes it
        self.channels: list[AbstractChannel] = []

    async def channel(self, connection: AbstractConnection, **kwargs: Any) -> AbstractChannel:
        with translated():
            channel = await connection.channel(**kwargs)
        self.channels.append(channel)
        return channel

    async def intake(self, prefetch: int) -> aiormq.abc.AbstractChannel:
        """A new channel on the consuming connection, at most ``prefetch`` unacked."""
        channel = await self.channel(self.consume)
        with translated():
            underlay = await channel.get_underlay_channel()
            await underlay.basic_qos(prefetch_count=prefetch)
        return underlay

    async def check_queue(self, queue: str) -> None:
        """``NotFound`` unless ``queue`` exists (a passive declare creates nothing)."""
        channel = await self._checks()
        with translated():
            await channel.declare_queue(queue, passive=True)

    async def check_exchange(self, exchange: str) -> None:
        """``NotFound`` unless ``exchange`` exists."""
        channel = await self._checks()
        with translated():
            await channel.declare_exchange(exchange, passive=True)

    async def _checks(self) -> AbstractChannel:
        if self._checking is None or self._checking.is_closed:
            self._checking = await self.channel(self.consume)
        return self._checking

    async def send(self, exchange: str, routing_key: str, body: bytes,
                   properties: Properties) -> None:
        """Publish mandatory and wait for the confirm; ``DeliveryFailed`` otherwise."""
        with publishing():
            if self._confirming is None or self._confirming.is_closed:
                channel = await self.channel(self.publish, publisher_confirms=True,
                                             on_return_raises=True)
                self._confirming = await channel.get_underlay_channel()
            await self._confirming.basic_publish(
                body, exchange=exchange, routing_key=routing_key,
                properties=wire_properties(properties), mandatory=True,
                timeout=self.confirm_timeout)

    async def declare_control(self, exchange: str) -> None:
        """Declare the control exchange (topic, durable) on the publishing connection."""
        channel = await self.channel(self.publish)
        with translated():
            self._control = await channel.declare_exchange(
                exchange, aio_pika.ExchangeType.TOPIC, durable=True)

    async def listen_for_pings(self, exchange: str, ping_key: str, wake: asyncio.Event) -> None:
        """Set ``wake`` on every ping on the control ``exchange`` (an exclusive queue,
        no acks: a lost ping is replaced by the next)."""
        channel = await self.channel(self.consume)
        with translated():
            await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            pings = await channel.declare_queue("", exclusive=True, auto_delete=True)
            await pings.bind(exchange, ping_key)

            async def on_ping(_message: object) -> None:
                wake.set()

            await pings.consume(on_ping, no_ack=True)

    async def announce(self, routing_key: str, body: bytes, properties: Properties) -> None:
        """Publish a control message (not persistent; ``properties.expiration`` in ms);
        nothing before ``declare_control``."""
        if self._control is None:
            return
        expiration = None if properties.expiration is None \
            else int(properties.expiration) / 1000
        with translated():
            await self._control.publish(aio_pika.Message(
                body, content_type=properties.content_type, type=properties.type,
                app_id=properties.app_id, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                expiration=expiration), routing_key=routing_key)

    async def close(self) -> None:
        for channel in reversed(self.channels):
            await close_quietly(channel)

