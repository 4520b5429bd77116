"""A service instance on the discovery protocol: announce, heartbeat, answer pings, leave.

Guarantees: the instance announces itself on the control exchange
(``router.discovery.registry``) at start, at every heartbeat and on every ping, and
says goodbye when it stops.  Control messages are not persistent and expire
after three heartbeats.  A control message that cannot be published is
logged, never raised: discovery never stops a service from handling messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from router.discovery.registry import (
    ANNOUNCEMENT_TYPE,
    PING_KEY,
    Announcement,
    announce_key,
    goodbye,
    goodbye_key,
)
from router.sdk.links import CHANNEL_GONE, Links

__all__ = ["Announcer"]

log = logging.getLogger("router.sdk")


class Announcer:
    """Announces one running instance over its ``Links``; ``wake`` announces at once."""

    def __init__(self, links: Links, announcement: Callable[[], Announcement], *,
                 name: str, instance: str, heartbeat: float, control_exchange: str,
                 wake: asyncio.Event) -> None:
        self.links, self.announcement = links, announcement
        self.name, self.instance, self.heartbeat = name, instance, heartbeat
        self.control_exchange = control_exchange
        self.wake = wake  # a ping or a stop: announce or leave now
        self._control: AbstractExchange | None = None

    async def declare(self) -> None:
        """Declare the control exchange on the publishing connection."""
        control = await self.links.channel(self.links.publish)
        self._control = await control.declare_exchange(self.control_exchange,
                                                       aio_pika.ExchangeType.TOPIC, durable=True)

    async def listen_for_pings(self) -> None:
        channel = await self.links.channel(self.links.consume)
        await channel.declare_exchange(self.control_exchange, aio_pika.ExchangeType.TOPIC,
                                       durable=True)
        pings = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await pings.bind(self.control_exchange, PING_KEY)

        async def on_ping(_message: AbstractIncomingMessage) -> None:
            self.wake.set()

        await pings.consume(on_ping, no_ack=True)

    async def heartbeats(self, stop: asyncio.Event) -> None:
        """Announce now, then at every heartbeat and on every ping, until ``stop``."""
        while not stop.is_set():
            self.wake.clear()
            try:
                await self._publish(announce_key(self.name), self.announcement().encode())
            except (TimeoutError, *CHANNEL_GONE) as exc:
                log.warning("%s: cannot announce: %s", self.name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.heartbeat)

    async def say_goodbye(self) -> None:
        try:
            await self._publish(goodbye_key(self.name), goodbye(self.name, self.instance))
        except (TimeoutError, *CHANNEL_GONE) as exc:
            log.warning("%s: cannot say goodbye: %s", self.name, exc)

    async def _publish(self, routing_key: str, body: bytes) -> None:
        if self._control is None:
            return
        # Not persistent, and stale after three heartbeats: nobody needs an old heartbeat.
        await self._control.publish(aio_pika.Message(
            body, content_type="application/json", type=ANNOUNCEMENT_TYPE, app_id=self.name,
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            expiration=3 * self.heartbeat), routing_key=routing_key)
