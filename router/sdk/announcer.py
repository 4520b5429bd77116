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
from dataclasses import dataclass

from router.core.envelope import Properties
from router.discovery.registry import (
    ANNOUNCEMENT_TYPE,
    PING_KEY,
    Announcement,
    announce_key,
    goodbye,
    goodbye_key,
)
from router.errors import BrokerFailure
from router.sdk.links import Links

__all__ = ["Announcer"]

log = logging.getLogger("router.sdk")


@dataclass
class Announcer:
    """Announces one running instance over its ``Links``; ``wake`` announces at once."""

    links: Links
    announcement: Callable[[], Announcement]
    name: str
    instance: str
    heartbeat: float
    control_exchange: str
    wake: asyncio.Event  # a ping or a stop: announce or leave now

    async def declare(self) -> None:
        """Declare the control exchange on the publishing connection."""
        await self.links.declare_control(self.control_exchange)

    async def listen_for_pings(self) -> None:
        await self.links.listen_for_pings(self.control_exchange, PING_KEY, self.wake)

    async def heartbeats(self, stop: asyncio.Event) -> None:
        """Announce now, then at every heartbeat and on every ping, until ``stop``."""
        while not stop.is_set():
            self.wake.clear()
            try:
                await self._publish(announce_key(self.name), self.announcement().encode())
            except BrokerFailure as exc:
                log.warning("%s: cannot announce: %s", self.name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.heartbeat)

    async def say_goodbye(self) -> None:
        try:
            await self._publish(goodbye_key(self.name), goodbye(self.name, self.instance))
        except BrokerFailure as exc:
            log.warning("%s: cannot say goodbye: %s", self.name, exc)

    async def _publish(self, routing_key: str, body: bytes) -> None:
        # Not persistent, and stale after three heartbeats: nobody needs an old heartbeat.
        await self.links.announce(routing_key, body, Properties(
            content_type="application/json", type=ANNOUNCEMENT_TYPE, app_id=self.name,
            expiration=str(round(3 * self.heartbeat * 1000))))
