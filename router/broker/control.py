"""The control exchange on the broker: hear service announcements, ask for them.

``listen`` binds an exclusive, server-named queue to ``service.announce.*``
and ``service.goodbye.*`` and hands every announcement to the registry; it
consumes without acks (announcements are heartbeats: a lost one is replaced
by the next).  ``ping`` asks every live instance to announce itself at once,
so a router or ``mcp-router services`` that just started does not wait a
whole heartbeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiormq.abc
import orjson
from aio_pika.abc import AbstractConnection

from router.broker.failures import translated
from router.discovery.registry import CONTROL_EXCHANGE, PING_KEY, Announcement, parse_announcement

__all__ = ["listen", "ping"]

log = logging.getLogger("router.control")

ANNOUNCE_BINDING = "service.announce.*"
GOODBYE_BINDING = "service.goodbye.*"


async def _declare(channel: aiormq.abc.AbstractChannel, exchange: str) -> None:
    await channel.exchange_declare(exchange, exchange_type="topic", durable=True)


async def listen(connection: AbstractConnection, heard: Callable[[Announcement], object],
                 left: Callable[[str], object], exchange: str = CONTROL_EXCHANGE) -> None:
    """Start hearing announcements (``heard``) and goodbyes (``left(instance)``) on the
    control ``exchange`` (``topology.yaml``'s ``control.exchange``).

    The queue lives as long as ``connection``'s channel.
    """
    with translated():
        wrapper = await connection.channel(publisher_confirms=False)
        channel = await wrapper.get_underlay_channel()
        await _declare(channel, exchange)
        ok = await channel.queue_declare("", exclusive=True, auto_delete=True)
        queue = ok.queue
        if queue is None:  # the broker always names it; keep the type checker honest
            raise RuntimeError("the broker did not name the control queue")
        for key in (ANNOUNCE_BINDING, GOODBYE_BINDING):
            await channel.queue_bind(queue, exchange, key)

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        key = message.routing_key or ""
        if key.startswith("service.goodbye."):
            try:
                data = orjson.loads(message.body)
                instance = data.get("instance") if isinstance(data, dict) else None
            except orjson.JSONDecodeError:
                instance = None
            if isinstance(instance, str):
                left(instance)
            return
        parsed = parse_announcement(message.body)
        if isinstance(parsed, str):
            log.warning("ignored an announcement on %r: %s", key, parsed)
            return
        heard(parsed)

    with translated():
        await channel.basic_consume(queue, on_message, no_ack=True)


async def ping(connection: AbstractConnection, exchange: str = CONTROL_EXCHANGE) -> None:
    """Ask every live service instance on the control ``exchange`` to announce itself now."""
    with translated():
        wrapper = await connection.channel(publisher_confirms=False)
        try:
            channel = await wrapper.get_underlay_channel()
            await _declare(channel, exchange)
            await channel.basic_publish(b"{}", exchange=exchange, routing_key=PING_KEY)
        finally:
            await wrapper.close()
