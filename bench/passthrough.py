"""The hand-written baseline every row is compared with: consume -> confirmed publish -> ack.

What a team would write by hand with aio-pika: a quorum queue consumed with
``PREFETCH``, one task per message (aio-pika's default), each message published
to the destination exchange with confirms and ``mandatory`` on a connection of
its own, then acked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aio_pika

from bench.entities import PREFETCH, Names

__all__ = ["Stop", "passthrough"]

Stop = Callable[[], Awaitable[None]]


async def passthrough(url: str, n: Names) -> Stop:
    """Start consuming ``n.ingress_q``; the answer stops it."""
    consume_conn = await aio_pika.connect(url)
    publish_conn = await aio_pika.connect(url)
    channel = await consume_conn.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    out = await publish_conn.channel(publisher_confirms=True, on_return_raises=True)
    dest = await out.get_exchange(n.dest, ensure=False)
    queue = await channel.get_queue(n.ingress_q, ensure=False)

    async def handle(m: aio_pika.abc.AbstractIncomingMessage) -> None:
        await dest.publish(aio_pika.Message(m.body, headers=m.headers, type=m.type,
                                            message_id=m.message_id,
                                            content_type=m.content_type,
                                            delivery_mode=m.delivery_mode),
                           routing_key="order.created", mandatory=True)
        await m.ack()

    tag = await queue.consume(handle)

    async def stop() -> None:
        await queue.cancel(tag)
        await consume_conn.close()
        await publish_conn.close()

    return stop
