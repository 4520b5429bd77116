"""Declaring the topology on the broker: idempotent, and honest about conflicts.

RabbitMQ answers a declaration that differs from an existing entity by
closing the channel (406 PRECONDITION_FAILED, RabbitMQ docs "Queues:
Property Equivalence").  Each such answer is recorded as a conflict naming the
entity and a fresh channel is opened, so one run reports every conflict; then
``TopologyConflict`` is raised if there were any.

On a cluster, a classic queue lives on one node: while that node is down the
broker answers 404 "home node ... is down or inaccessible".  That is not a
conflict but an outage: ``BrokerUnavailable`` is raised instead, so the router
retries (quorum queues and streams, replicated, do not have the problem).
"""

from __future__ import annotations

import logging

import aiormq
from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractConnection

from router.config.configuration import Config
from router.config.topology import Queue, Topology
from router.errors import BrokerUnavailable, TopologyConflict

__all__ = ["declare_config", "declare_queues", "declare_topology"]

log = logging.getLogger("router.declare")


def _explain(exc: aiormq.exceptions.ChannelClosed) -> str:
    args = [a for a in exc.args if a]
    text = args[-1] if args else str(exc)
    return str(text)


class _Declarer:
    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self.channel: AbstractChannel | None = None
        self.conflicts: list[str] = []
        self.unavailable: list[str] = []  # queues whose node is down
        self.declared: list[str] = []

    async def _open(self) -> AbstractChannel:
        if self.channel is None or self.channel.is_closed:
            self.channel = await self.connection.channel(publisher_confirms=False)
        return self.channel

    async def exchange(self, name: str, kind: str, *, durable: bool, auto_delete: bool,
                       internal: bool, arguments: dict[str, object]) -> None:
        channel = await self._open()
        try:
            await channel.declare_exchange(name, ExchangeType(kind), durable=durable,
                                           auto_delete=auto_delete, internal=internal,
                                           arguments=arguments)  # type: ignore[arg-type]  # aio-pika's type
            self.declared.append(f"exchange {name} ({kind})")
        except aiormq.exceptions.ChannelClosed as exc:
            self.conflicts.append(f"exchange {name!r}: {_explain(exc)}")

    async def queue(self, name: str, *, durable: bool, auto_delete: bool,
                    arguments: dict[str, object]) -> None:
        channel = await self._open()
        try:
            await channel.declare_queue(name, durable=durable, auto_delete=auto_delete,
                                        arguments=arguments)  # type: ignore[arg-type]  # aio-pika's type
            self.declared.append(f"queue {name} ({arguments.get('x-queue-type', 'classic')})")
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            if "is down or inaccessible" not in _explain(exc):
                raise
            self.unavailable.append(name)
        except aiormq.exceptions.ChannelClosed as exc:
            self.conflicts.append(f"queue {name!r}: {_explain(exc)}")

    async def binding(self, exchange: str, queue: str, routing_key: str,
                      arguments: dict[str, object]) -> None:
        if queue in self.unavailable:
            return
        channel = await self._open()
        try:
            underlay = await channel.get_underlay_channel()
            await underlay.queue_bind(queue, exchange, routing_key=routing_key,
                                      arguments=arguments)  # type: ignore[arg-type]  # aio-pika's type
            self.declared.append(f"binding {exchange} -> {queue} [{routing_key}]")
        except aiormq.exceptions.ChannelClosed as exc:
            self.conflicts.append(f"binding {exchange!r} -> {queue!r}: {_explain(exc)}")


async def declare_config(connection: AbstractConnection, config: Config) -> list[str]:
    """Declare a configuration's topology and the retry queues its policies need."""
    return await declare_topology(connection, config.topology, config.retry_queues())


async def declare_topology(connection: AbstractConnection, topology: Topology,
                           extra_queues: tuple[Queue, ...] = ()) -> list[str]:
    """Declare every exchange, queue (and ``extra_queues``) and binding; return them.

    Raises ``TopologyConflict`` listing every entity the broker refused.
    """
    d = _Declarer(connection)
    for ex in topology.all_exchanges():
        await d.exchange(ex.name, ex.type, durable=ex.durable, auto_delete=ex.auto_delete,
                         internal=ex.internal, arguments=dict(ex.arguments))
    for q in (*topology.all_queues(), *extra_queues):
        await d.queue(q.name, durable=q.durable, auto_delete=q.auto_delete,
                      arguments=q.broker_arguments())
    for b in topology.all_bindings():
        await d.binding(b.exchange, b.queue, b.routing_key, dict(b.arguments))
    if d.channel is not None and not d.channel.is_closed:
        await d.channel.close()
    if d.conflicts:
        raise TopologyConflict(d.conflicts)
    _raise_unavailable(d)
    log.info("topology declared: %d entities", len(d.declared))
    return d.declared


def _raise_unavailable(d: _Declarer) -> None:
    if d.unavailable:
        raise BrokerUnavailable("the node holding classic queue(s) "
                                f"{', '.join(map(repr, d.unavailable))} is down or "
                                "inaccessible; waiting for it (quorum queues are replicated "
                                "and would not wait)")


async def declare_queues(connection: AbstractConnection, queues: tuple[Queue, ...]) -> list[str]:
    """Declare ``queues`` alone (a service's retry queues); ``TopologyConflict`` as above."""
    d = _Declarer(connection)
    for q in queues:
        await d.queue(q.name, durable=q.durable, auto_delete=q.auto_delete,
                      arguments=q.broker_arguments())
    if d.channel is not None and not d.channel.is_closed:
        await d.channel.close()
    if d.conflicts:
        raise TopologyConflict(d.conflicts)
    _raise_unavailable(d)
    return d.declared
