"""A service on mcp-router: handlers per message type over its queues (the shell).

::

    service = Service("billing", queue="billing.orders", registry=config.registry,
                      idempotency=InMemoryIdempotency())

    @service.handler("OrderCreated", versions=[1, 2])
    async def on_created(order: dict, ctx: Context) -> None: ...

    await service.run(amqp_url, stop)            # or: async with service.running(connection):

What it guarantees: each delivery is handled and settled explicitly
(``router.sdk.intake``): dispatched by type and version, called again in
process, then parked on the broker or dead-lettered (``router.sdk.parking``).
The instance announces itself on the control exchange
(``router.sdk.announcer``) while it runs.  Starting checks that its queues
and the dead-letter exchange exist and declares its retry queues.
Stopping stops intake first, lets the handlers in flight finish (at most
``drain_timeout``, then they are cancelled and their messages requeued), then
says goodbye.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from opentelemetry.trace import Tracer

from router.broker.amqp import Connection, close_quietly, connect
from router.broker.servicelinks import when_closed
from router.config.cloudevents_spec import CloudEventsSpec
from router.config.keyring import Keyring
from router.config.policies import DEFAULT_RETRY, RetryPolicy
from router.config.retry_policy import retry_queue_name
from router.config.schemas import SchemaRegistry
from router.config.topology import Topology
from router.discovery.registry import (
    CONTROL_EXCHANGE,
    DEFAULT_HEARTBEAT,
    Announcement,
    handles_of,
    instance_id,
)
from router.errors import BrokerUnavailable
from router.observe.tracing import PropagatingTracer
from router.sdk.announcer import Announcer
from router.sdk.delivery import Handling, PermanentError, Sleep
from router.sdk.handlers import Handler, Registration, policy_of, unhandled_routes
from router.sdk.idempotency import Idempotency
from router.sdk.intake import Consumer, envelope_of
from router.sdk.links import Links
from router.sdk.queues import MissingQueue, prepare_queues

__all__ = ["MissingQueue", "PermanentError", "Service", "ServiceConfig", "envelope_of"]

log = logging.getLogger("router.sdk")


def _sdk_version() -> str:
    try:
        return f"mcp-router {importlib.metadata.version('mcp-router')}"
    except importlib.metadata.PackageNotFoundError:
        return "mcp-router"


class ServiceConfig(Protocol):
    """What ``Service.from_config`` reads of a configuration (``router.config.Config`` has
    it): the schema registry and the topology, nothing of the router's own settings."""

    @property
    def registry(self) -> SchemaRegistry: ...

    @property
    def topology(self) -> Topology: ...


class Service:
    """Handlers per message type over one or more queues; see the module docstring."""

    def __init__(  # noqa: PLR0913 - the public API: keyword options, as SPEC "SDK" lists them
        self, name: str, *, queue: str, registry: SchemaRegistry | None = None,
        dead_letter_exchange: str = "mcp.dlx", concurrency: int = 16,
        retry: RetryPolicy = DEFAULT_RETRY, idempotency: Idempotency | None = None,
        handler_timeout: float | None = 60.0, heartbeat: float = DEFAULT_HEARTBEAT,
        drain_timeout: float = 30.0, tracer: Tracer | None = None,
        control_exchange: str = CONTROL_EXCHANGE, topology: Topology | None = None,
        sleep: Sleep = asyncio.sleep, keyring: Keyring | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.name, self.queue, self.registry = name, queue, registry
        self.dead_letter_exchange, self.concurrency = dead_letter_exchange, concurrency
        self.retry, self.idempotency, self.handler_timeout = retry, idempotency, handler_timeout
        self.heartbeat, self.drain_timeout = heartbeat, drain_timeout
        self.control_exchange = control_exchange  # the protocol's name; tests use their own
        self.topology = topology  # when known: warn at start about types nobody here handles
        self.tracer: Tracer = tracer or PropagatingTracer()
        self.instance = instance_id(name, socket.gethostname(), os.getpid(),
                                    secrets.token_hex(2))
        self._sleep = sleep
        self.keyring = keyring  # data keys: sealed fields are opened for handlers
        self._handlers: dict[str, dict[str, Registration]] = {}
        self._wake = asyncio.Event()  # a ping or a stop: announce or leave now
        self._started = datetime.now(UTC)

    @classmethod
    def from_config(cls, name: str, config: ServiceConfig, *, queue: str,
                    **options: Any) -> Service:
        """A service using a configuration directory's registry, dead-letter and control
        exchanges."""
        options.setdefault("control_exchange", config.topology.control.exchange)
        return cls(name, queue=queue, registry=config.registry,
                   dead_letter_exchange=config.topology.dead_letter.exchange,
                   topology=config.topology, **options)

    # -- registration ---------------------------------------------------------------------

    def handler(self, message_type: str, *, versions: Iterable[int] = (),
                queue: str | None = None, retry: RetryPolicy | None = None,
                sealed: bool = False) -> Callable[[Handler], Handler]:
        """Register the decorated coroutine for ``message_type`` (schema ``versions``: any
        when empty) on ``queue`` (default: the service's queue); ``sealed``: it takes
        sensitive fields encrypted, as they came, and needs no keys."""
        on = queue or self.queue

        def register(function: Handler) -> Handler:
            handlers = self._handlers.setdefault(on, {})
            if message_type in handlers:
                raise ValueError(f"{self.name}: {message_type} already has a handler on {on}")
            handlers[message_type] = Registration(message_type, function,
                                                  frozenset(versions), retry, sealed)
            return function
        return register

    @property
    def queues(self) -> tuple[str, ...]:
        """Every queue consumed, the service's own first."""
        return tuple(dict.fromkeys([self.queue, *self._handlers]))

    def announcement(self) -> Announcement:
        """What this instance announces on the control exchange."""
        versions: dict[str, set[int]] = {}
        any_version: set[str] = set()
        for handlers in self._handlers.values():
            for r in handlers.values():
                versions.setdefault(r.message_type, set()).update(r.versions)
                if not r.versions:
                    any_version.add(r.message_type)
        return Announcement(self.name, self.instance, self.queues,
                            handles_of({t: () if t in any_version else v
                                        for t, v in versions.items()}),
                            self.heartbeat, _sdk_version(), self._started)

    def warnings(self) -> list[str]:
        """What the topology sends to this service's queues that no handler takes."""
        if self.topology is None:
            return []
        return [w for queue in self.queues
                for w in unhandled_routes(self.topology, queue, self._handlers.get(queue, {}))]

    def retry_delays(self, queue: str) -> tuple[float, ...]:
        """Every broker delay the retry policies of ``queue``'s handlers use, ascending."""
        return tuple(sorted({d for r in [None, *self._handlers.get(queue, {}).values()]
                             for d in policy_of(r, self.retry).delays}))

    def retry_queues(self, queue: str) -> tuple[str, ...]:
        """The TTL queues ``queue``'s messages are parked in, one per delay."""
        return tuple(retry_queue_name(queue, d) for d in self.retry_delays(queue))

    # -- lifetime -------------------------------------------------------------------------

    async def run(self, amqp_url: str, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, reconnecting (with backoff) when the broker goes away.

        Intake and publishing use separate connections (a memory alarm blocks
        publishing connections; acks on them would stall, STYLE.md).
        """
        backoff = 1.0
        while not stop.is_set():
            lost = asyncio.Event()
            try:
                consume = await connect(amqp_url, f"{self.name} {self.instance} (consume)")
                publish = await connect(amqp_url, f"{self.name} {self.instance} (publish)")
            except BrokerUnavailable as exc:
                log.warning("%s: %s; retrying in %.0f s", self.name, exc, backoff)
            else:
                for c in (consume, publish):
                    when_closed(c, lost)
                try:
                    async with self.running(consume, publish):
                        backoff = 1.0
                        await _first(stop.wait(), lost.wait())
                finally:
                    for c in (publish, consume):
                        await close_quietly(c)
                if stop.is_set():
                    return
                log.warning("%s: connection to the broker lost; reconnecting", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 30.0)

    @contextlib.asynccontextmanager
    async def running(self, connection: Connection,
                      publish_connection: Connection | None = None
                      ) -> AsyncIterator[Service]:
        """Consume, announce and heartbeat while the block runs; on exit stop intake, finish
        the handlers in flight, say goodbye.  Raises if starting fails (a missing queue,
        a conflicting retry queue)."""
        stop, ready = asyncio.Event(), asyncio.Event()
        serving = asyncio.create_task(
            self._serve(connection, publish_connection or connection, stop, ready))
        await _first(ready.wait(), asyncio.shield(serving))
        if serving.done():
            serving.result()  # raises what stopped it
            raise RuntimeError(f"{self.name} stopped while starting")
        try:
            yield self
        finally:
            stop.set()
            self._wake.set()
            await serving

    async def _serve(self, connection: Connection, publish: Connection,
                     stop: asyncio.Event, ready: asyncio.Event) -> None:
        links = Links(connection, publish)
        consumer = Consumer(self._handling(), links)
        announcer = Announcer(links, self.announcement, name=self.name, instance=self.instance,
                              heartbeat=self.heartbeat, control_exchange=self.control_exchange,
                              wake=self._wake)
        try:
            await prepare_queues(links, service=self.name, queues=self.queues,
                                 dead_letter_exchange=self.dead_letter_exchange,
                                 retry_delays=self.retry_delays)
            await announcer.declare()
            intake = [await consumer.intake(queue) for queue in self.queues]
            async with asyncio.TaskGroup() as group:
                # Each loop stops intake at ``stop`` and finishes what is in flight.
                for loop in intake:
                    group.create_task(loop.run(stop))
                await asyncio.gather(*(loop.consuming.wait() for loop in intake))
                await announcer.listen_for_pings()
                group.create_task(announcer.heartbeats(stop))
                ready.set()
                log.info("%s: %s consuming %s", self.name, self.instance, ", ".join(self.queues))
                for warning in self.warnings():
                    log.warning("%s: %s", self.name, warning)
            await announcer.say_goodbye()
        finally:
            await links.close()

    def _handling(self) -> Handling:
        return Handling(self.name, self._handlers, self.registry, self.retry,
                        self.idempotency, self.handler_timeout, self.tracer,
                        self.dead_letter_exchange, self.concurrency, self.drain_timeout,
                        self._sleep, self.keyring,
                        self.topology.cloudevents if self.topology else CloudEventsSpec())


async def _first(*waits: Awaitable[Any]) -> None:
    """Return when the first of ``waits`` finishes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
