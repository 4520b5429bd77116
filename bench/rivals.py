"""FastStream doing the router's job by hand: validate (pydantic) and republish.

The same queue, prefetch, destination and confirms as the passthrough; each
message is parsed into a pydantic model of the OrderCreated schema and
published again to the destination exchange.  Optional: the benchmark skips
the row when FastStream is not installed (``pip install -e '.[bench]'``).
"""

# No ``from __future__ import annotations``: pydantic (through FastStream) reads the
# handler's annotations at run time, and the models are local to the starter.
import importlib.util
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import UUID

__all__ = ["faststream_available", "faststream_starter"]

Stop = Callable[[], Awaitable[None]]


def faststream_available() -> bool:
    return importlib.util.find_spec("faststream") is not None


def faststream_starter(url: str, queue: str, exchange: str, prefetch: int
                       ) -> Callable[[], Awaitable[Stop]]:
    """Start a FastStream app consuming ``queue`` and republishing to ``exchange``."""
    from faststream.rabbit import (  # noqa: PLC0415 -- optional
        Channel,
        ExchangeType,
        QueueType,
        RabbitBroker,
        RabbitExchange,
        RabbitQueue,
    )
    from faststream.rabbit.annotations import RabbitMessage  # noqa: PLC0415
    from pydantic import BaseModel  # noqa: PLC0415 -- FastStream's own dependency

    class Item(BaseModel):
        sku: str
        quantity: int
        unit_price: float

    class OrderCreated(BaseModel):
        order_id: UUID
        customer_id: str
        customer_email: str
        total_amount: float
        currency: str
        created_at: datetime
        items: list[Item]

    async def start() -> Stop:
        broker: Any = RabbitBroker(url, logger=None)
        source = RabbitQueue(queue, queue_type=QueueType.QUORUM, declare=False)
        dest = RabbitExchange(exchange, type=ExchangeType.TOPIC, declare=False)
        publisher = broker.publisher(exchange=dest, routing_key="order.created")

        # Headers passed on by hand, as the router does (trace context, the bench's stamp).
        @broker.subscriber(source, channel=Channel(prefetch_count=prefetch))
        async def handle(order: OrderCreated, message: RabbitMessage) -> None:
            await publisher.publish(order, headers=message.headers)

        await broker.start()

        async def stop() -> None:
            await broker.stop()

        return stop

    return start
