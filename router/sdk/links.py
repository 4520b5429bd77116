"""The service's broker links: intake on one connection, publishing on another (the shell).

Guarantees: every channel opened through a ``Links`` is closed by
``close()``; ``send`` publishes mandatory on a confirming channel that raises
on returns, and either returns once the broker confirmed or raises
``DeliveryFailed`` (aio-pika/aiormq errors translated once, ``router.broker.amqp``).
Intake and publishing use separate connections: a memory alarm blocks
publishing connections, and acks on them would stall (STYLE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiormq
import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from router.broker.amqp import translate, wire_properties
from router.core.envelope import Properties
from router.sdk.publisher import CONFIRM_TIMEOUT, connection_user

__all__ = ["CHANNEL_GONE", "Links"]

# What a channel or connection that went away raises; the broker requeues what was unacked.
CHANNEL_GONE = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError,
                ConnectionError)


class Links:
    """The service's channels: intake on one connection, publishing on another."""

    def __init__(self, consume: AbstractConnection, publish: AbstractConnection) -> None:
        self.consume, self.publish = consume, publish
        self.user = connection_user(publish)  # RabbitMQ validates user_id against it
        self._confirming: aiormq.abc.AbstractChannel | None = None
        self.control: AbstractExchange | None = None
        self.channels: list[AbstractChannel] = []

    async def channel(self, connection: AbstractConnection, **kwargs: Any) -> AbstractChannel:
        channel = await connection.channel(**kwargs)
        self.channels.append(channel)
        return channel

    async def send(self, exchange: str, routing_key: str, body: bytes,
                   properties: Properties) -> None:
        """Publish mandatory and wait for the confirm; ``DeliveryFailed`` otherwise."""
        try:
            if self._confirming is None or self._confirming.is_closed:
                channel = await self.channel(self.publish, publisher_confirms=True,
                                             on_return_raises=True)
                self._confirming = await channel.get_underlay_channel()
            await self._confirming.basic_publish(
                body, exchange=exchange, routing_key=routing_key,
                properties=wire_properties(properties), mandatory=True, timeout=CONFIRM_TIMEOUT)
        except Exception as exc:
            raise translate(exc) from exc

    async def close(self) -> None:
        for channel in reversed(self.channels):
            if not channel.is_closed:
                with contextlib.suppress(*CHANNEL_GONE, asyncio.TimeoutError):
                    await channel.close()
