"""The dead-letter queue on the broker, for ``mcp-router dlq`` and the console.

Guarantees: ``open_held`` gives a dedicated channel on which messages are
fetched with ``basic.get`` *without* ack; each stays in the queue until
``ack``, and every one not acked returns to it when the channel closes (which
the broker does too when the process dies).  Every one acked is gone for good
once ``open_held`` closed the channel: a quorum queue's channel that has 32
commands in flight to the queue keeps further acks to itself until the queue
catches up, and drops them if it closes first (RabbitMQ #10327: a purge of
300 dead letters left up to a third of them behind), so before closing a
channel that acked anything ``open_held`` fetches once more: ``basic.get`` is
a synchronous command queued behind every ack the channel passed on, and by
its answer the channel has passed on those it kept.  ``Replayer.publish``
publishes ``mandatory`` on a confirming channel and returns only once the broker
confirmed; otherwise it raises ``DeliveryFailed`` (``Unroutable`` when
returned).  Failures leave as ``router.errors`` values (``NotFound`` for a
missing queue).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiormq.abc
from aio_pika.abc import AbstractConnection
from pamqp import commands as spec

from router.broker.amqp import close_quietly
from router.broker.converter import envelope_of
from router.broker.encodable import wire_properties
from router.broker.failures import publishing, translated
from router.core.envelope import Envelope, Properties
from router.errors import NotFound, RouterError

__all__ = ["Fetched", "HeldQueue", "Replayer", "exchange_exists", "open_held"]

GET_TIMEOUT = 30.0  # seconds for one basic.get


@dataclass(frozen=True, slots=True)
class Fetched:
    """One message fetched unacked: its delivery tag and its envelope as it is (no message
    id invented)."""

    tag: int
    envelope: Envelope


@dataclass
class HeldQueue:
    """A channel on one queue; what it fetched stays unacked until ``ack``."""

    channel: aiormq.abc.AbstractChannel
    name: str
    count: int  # ready messages when the channel was opened
    acked: int = 0

    async def get(self) -> Fetched | None:
        """The next message, unacked; None when the queue is empty."""
        with translated():
            message = await self.channel.basic_get(self.name, no_ack=False, timeout=GET_TIMEOUT)
        if not isinstance(message.delivery, spec.Basic.GetOk):
            return None
        return Fetched(message.delivery.delivery_tag or 0, envelope_of(message, invent_id=False))

    async def ack(self, tag: int) -> None:
        """Remove the message fetched as ``tag`` from the queue."""
        with translated():
            await self.channel.basic_ack(tag)
        self.acked += 1

    async def settle(self) -> None:
        """Wait until the queue has the acks sent so far (see the module docstring); what
        this fetches returns to the queue with the rest when the channel closes."""
        if self.acked and not self.channel.is_closed:
            with contextlib.suppress(RouterError, TimeoutError), translated():
                await self.channel.basic_get(self.name, no_ack=False, timeout=GET_TIMEOUT)


@contextlib.asynccontextmanager
async def open_held(connection: AbstractConnection, name: str) -> AsyncIterator[HeldQueue]:
    """A dedicated channel on queue ``name`` (``NotFound`` if there is none); closing it
    returns every message not acked, once the queue has the acks."""
    with translated():
        channel = await connection.channel(publisher_confirms=False)
    try:
        with translated():
            underlay = await channel.get_underlay_channel()
            declared = await underlay.queue_declare(name, passive=True)
        held = HeldQueue(underlay, name, int(declared.message_count or 0))
        try:
            yield held
        finally:
            await held.settle()
    finally:
        await close_quietly(channel)


class Replayer:
    """Publishes one message at a time, mandatory, and waits for the broker's confirm."""

    def __init__(self, connection: AbstractConnection, confirm_timeout: float = 10.0) -> None:
        self.connection, self.confirm_timeout = connection, confirm_timeout
        self._channel: aiormq.abc.AbstractChannel | None = None

    async def publish(self, body: bytes, properties: Properties, exchange: str,
                      routing_key: str) -> None:
        """Raises ``DeliveryFailed`` (``Unroutable`` when returned) unless confirmed."""
        with publishing():
            if self._channel is None or self._channel.is_closed:  # a 404 closes it
                channel = await self.connection.channel(publisher_confirms=True,
                                                        on_return_raises=True)
                self._channel = await channel.get_underlay_channel()
            await self._channel.basic_publish(
                body, exchange=exchange, routing_key=routing_key,
                properties=wire_properties(properties), mandatory=True,
                timeout=self.confirm_timeout)

    async def close(self) -> None:
        """Close the replay connection."""
        await close_quietly(self.connection)


async def exchange_exists(connection: AbstractConnection, name: str) -> bool:
    """True when exchange ``name`` exists (the default exchange always does)."""
    if name == "":
        return True
    with translated():
        channel = await connection.channel(publisher_confirms=False)
    try:
        with translated():
            await channel.declare_exchange(name, passive=True)
    except NotFound:
        return False
    await close_quietly(channel)
    return True
