"""``mcp-router plan``: what ``apply`` would do to the live broker, without changing it.

Every exchange and queue is checked with a *passive* declaration (RabbitMQ
answers 404 when it does not exist, and creates nothing).  A queue that exists
is then compared with what the file asks for by declaring it again with the
file's arguments on a throwaway channel: for an existing queue that is
side-effect free, and RabbitMQ answers 406 PRECONDITION_FAILED naming the
argument that differs.  Exchanges are compared the same way.  Bindings cannot
be read this way: ``apply`` declares them idempotently.  When the management
API answers, ``router.broker.inventory`` makes a fuller plan instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractConnection

from router.broker.failures import broker_text, translated
from router.broker.inventory import Plan
from router.config.configuration import Config
from router.config.topology import Exchange, Queue
from router.errors import BrokerRefused, NotFound

__all__ = ["Plan", "plan_config"]


Declare = Callable[[AbstractChannel], Awaitable[object]]


async def _check(connection: AbstractConnection, plan: Plan, what: str, passive: Declare,
                 equivalent: Declare) -> None:
    """Missing: to create; present: declared again with the file's settings to compare."""
    try:
        with translated():
            await passive(await connection.channel(publisher_confirms=False))
    except NotFound:
        plan.create.append(what)
        return
    with translated():
        channel = await connection.channel(publisher_confirms=False)
    try:
        with translated():
            await equivalent(channel)
    except BrokerRefused as exc:
        plan.conflicts.append(f"{what}: {broker_text(exc)}")
        return
    plan.unchanged.append(what)
    with translated():
        await channel.close()


async def plan_config(connection: AbstractConnection, config: Config) -> Plan:
    """Compare ``config`` with the broker behind ``connection``; changes nothing."""
    plan = Plan()
    for ex in config.topology.all_exchanges():
        await _check(connection, plan, f"exchange {ex.name} ({ex.type})", *_exchange(ex))
    for q in config.broker_queues():
        await _check(connection, plan, f"queue {q.name} ({q.type})", *_queue(q))
    return plan


def _exchange(ex: Exchange) -> tuple[Declare, Declare]:
    async def passive(channel: AbstractChannel) -> object:
        return await channel.declare_exchange(ex.name, passive=True)

    async def equivalent(channel: AbstractChannel) -> object:
        return await channel.declare_exchange(
            ex.name, ExchangeType(ex.type), durable=ex.durable, auto_delete=ex.auto_delete,
            internal=ex.internal, arguments=dict(ex.arguments))

    return passive, equivalent


def _queue(q: Queue) -> tuple[Declare, Declare]:
    async def passive(channel: AbstractChannel) -> object:
        return await channel.declare_queue(q.name, passive=True)

    async def equivalent(channel: AbstractChannel) -> object:
        return await channel.declare_queue(q.name, durable=q.durable, auto_delete=q.auto_delete,
                                           arguments=q.broker_arguments())

    return passive, equivalent
