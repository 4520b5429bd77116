"""``mcp-router plan``: what ``apply`` would do to the live broker, without changing it.

Every exchange and queue is checked with a *passive* declaration (RabbitMQ
answers 404 when it does not exist, and creates nothing).  A queue that exists
is then compared with what the file asks for by declaring it again with the
file's arguments on a throwaway channel: for an existing queue that is
side-effect free, and RabbitMQ answers 406 PRECONDITION_FAILED naming the
argument that differs.  Exchanges are compared the same way.  Bindings cannot
be read without the management plugin: ``apply`` declares them idempotently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiormq
from aio_pika import ExchangeType
from aio_pika.abc import AbstractConnection

from router.config import Config

__all__ = ["Plan", "plan_config"]


@dataclass
class Plan:
    create: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def _reply(exc: BaseException) -> str:
    args = [a for a in exc.args if a]
    return str(args[-1]) if args else type(exc).__name__


async def plan_config(connection: AbstractConnection, config: Config) -> Plan:
    """Compare ``config`` with the broker behind ``connection``; changes nothing."""
    plan = Plan()
    for ex in config.topology.all_exchanges():
        what = f"exchange {ex.name} ({ex.type})"
        channel = await connection.channel(publisher_confirms=False)
        try:
            await channel.declare_exchange(ex.name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            plan.create.append(what)
            continue
        channel = await connection.channel(publisher_confirms=False)
        try:
            await channel.declare_exchange(ex.name, ExchangeType(ex.type), durable=ex.durable,
                                           auto_delete=ex.auto_delete, internal=ex.internal,
                                           arguments=dict(ex.arguments))
            plan.unchanged.append(what)
            await channel.close()
        except aiormq.exceptions.ChannelClosed as exc:
            plan.conflicts.append(f"{what}: {_reply(exc)}")
    for q in config.broker_queues():
        what = f"queue {q.name} ({q.type})"
        channel = await connection.channel(publisher_confirms=False)
        try:
            await channel.declare_queue(q.name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            plan.create.append(what)
            continue
        channel = await connection.channel(publisher_confirms=False)
        try:
            await channel.declare_queue(q.name, durable=q.durable, auto_delete=q.auto_delete,
                                        arguments=q.broker_arguments())
            plan.unchanged.append(what)
            await channel.close()
        except aiormq.exceptions.ChannelClosed as exc:
            plan.conflicts.append(f"{what}: {_reply(exc)}")
    return plan
