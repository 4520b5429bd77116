"""A service on mcp-router: handlers per message type over its queues (the shell).

::

    service = Service("billing", queue="billing.orders", registry=config.registry,
                      idempotency=InMemoryIdempotency())

    @service.handler("OrderCreated", versions=[1, 2])
    async def on_created(order: dict, ctx: Context) -> None: ...

    await service.run(amqp_url, stop)            # or: async with service.running(connection):

What it guarantees, per delivery (each a CONSUMER span continuing the
publisher's trace):

* at most ``concurrency`` handlers run per queue (prefetch and a semaphore);
* the body is decoded and validated against the registry as the router does;
  invalid input and types without a handler are dead-lettered at once
  (``router.sdk.handlers``);
* with ``idempotency``, a ``message_id`` already handled is acked without
  calling the handler (``router.sdk.idempotency``);
* a handler that raises is called again in process (tenacity), then parked on
  the broker for each delay of the retry policy, then dead-lettered as
  ``handler_failed`` (``router.sdk.attempts``); ``PermanentError`` skips the
  retries;
* every delivery is settled explicitly: acked once its outcome (handled,
  parked, dead-lettered) is done and confirmed by the broker, or requeued
  when that was impossible.  Never ``message.process()``, which would
  dead-letter a healthy message cancelled by a shutdown (STYLE.md).

The instance announces itself on the control exchange (``router.discovery``)
at start, at every heartbeat and on every ping, and says goodbye when it stops.
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
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
import aiormq.abc
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from opentelemetry.trace import Span, SpanKind, Tracer, use_span
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_not_exception_type,
    stop_after_attempt,
)

from router.amqp import connect, translate, wire_properties
from router.config import Config
from router.declare import declare_queues
from router.discovery import (
    ANNOUNCEMENT_TYPE,
    CONTROL_EXCHANGE,
    DEFAULT_HEARTBEAT,
    PING_KEY,
    Announcement,
    announce_key,
    goodbye,
    goodbye_key,
    handles_of,
    instance_id,
)
from router.envelope import Envelope, Properties
from router.errors import BrokerUnavailable, DeliveryFailed, RouterError
from router.outcome import Reason
from router.policies import DEFAULT_RETRY, RetryPolicy
from router.retry import GiveUp, RetryLater, retry_queue_name
from router.schemas import SchemaRegistry
from router.sdk.attempts import HandlerState, dead_letter, next_step, park, state_of
from router.sdk.handlers import (
    Dispatch,
    Handler,
    Refuse,
    Registration,
    context_of,
    dispatch,
    unhandled_routes,
)
from router.sdk.idempotency import Claimed, Idempotency, Seen
from router.sdk.publisher import CONFIRM_TIMEOUT, connection_user
from router.spans import process_attributes, process_name, record_failure
from router.topology import Topology
from router.tracing import PropagatingTracer, extract, inject

__all__ = ["MissingQueue", "PermanentError", "Service", "envelope_of"]

log = logging.getLogger("router.sdk")

Sleep = Callable[[float], Awaitable[None]]
REQUEUE_PAUSE = 1.0  # before requeueing what could not be parked or dead-lettered
BUSY_DELAY = 1.0  # re-check of a message id being handled elsewhere, without broker delays
_CHANNEL_GONE = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError,
                 ConnectionError)


class PermanentError(Exception):
    """Raised by a handler: this message can never succeed; dead-letter it now, no retries."""


class MissingQueue(RouterError):
    """A queue the service consumes, or the dead-letter exchange, does not exist."""


def _sdk_version() -> str:
    try:
        return f"mcp-router {importlib.metadata.version('mcp-router')}"
    except importlib.metadata.PackageNotFoundError:
        return "mcp-router"


def envelope_of(message: AbstractIncomingMessage) -> Envelope:
    """The core's view of an aio-pika delivery (``expiration`` back in milliseconds)."""
    expiration = message.expiration
    return Envelope(
        body=message.body,
        properties=Properties(
            content_type=message.content_type, content_encoding=message.content_encoding,
            headers=dict(message.headers or {}),
            delivery_mode=None if message.delivery_mode is None else int(message.delivery_mode),
            priority=message.priority, correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            expiration=None if not isinstance(expiration, int | float)
            else str(round(expiration * 1000)),
            message_id=message.message_id, timestamp=message.timestamp, type=message.type,
            user_id=message.user_id, app_id=message.app_id),
        exchange=message.exchange or "", routing_key=message.routing_key or "",
        redelivered=bool(message.redelivered))


@dataclass(frozen=True, slots=True)
class _Failure:
    """How this round's in-process attempts ended."""

    error: BaseException
    calls: int

    @property
    def permanent(self) -> bool:
        return isinstance(self.error, PermanentError)

    def text(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


@dataclass(frozen=True, slots=True)
class _Delivery:
    """One delivery being handled: where it came from, its ladder state, its span."""

    queue: str
    envelope: Envelope
    state: HandlerState
    span: Span

    @property
    def message_id(self) -> str | None:
        return self.envelope.properties.message_id


class _Links:
    """The service's channels: intake on one connection, publishing on another."""

    def __init__(self, consume: AbstractConnection, publish: AbstractConnection) -> None:
        self.consume, self.publish = consume, publish
        self.user = connection_user(publish)  # RabbitMQ validates user_id against it
        self._confirming: aiormq.abc.AbstractChannel | None = None
        self.control: AbstractExchange | None = None
        self.channels: list[AbstractChannel] = []

    async def channel(self, connection: AbstractConnection, **kwargs: Any) -> AbstractChannel:
        channel = await connection.channel(**kwargs)
        self.channels.append(channel)
        return channel

    async def send(self, exchange: str, routing_key: str, body: bytes,
                   properties: Properties) -> None:
        """Publish mandatory and wait for the confirm; ``DeliveryFailed`` otherwise."""
        try:
            if self._confirming is None or self._confirming.is_closed:
                channel = await self.channel(self.publish, publisher_confirms=True,
                                             on_return_raises=True)
                self._confirming = await channel.get_underlay_channel()
            await self._confirming.basic_publish(
                body, exchange=exchange, routing_key=routing_key,
                properties=wire_properties(properties), mandatory=True, timeout=CONFIRM_TIMEOUT)
        except Exception as exc:
            raise translate(exc) from exc

    async def close(self) -> None:
        for channel in reversed(self.channels):
            if not channel.is_closed:
                with contextlib.suppress(*_CHANNEL_GONE, asyncio.TimeoutError):
                    await channel.close()


class Service:
    """Handlers per message type over one or more queues; see the module docstring."""

    def __init__(self, name: str, *, queue: str, registry: SchemaRegistry | None = None,
                 dead_letter_exchange: str = "mcp.dlx", concurrency: int = 16,
                 retry: RetryPolicy = DEFAULT_RETRY, idempotency: Idempotency | None = None,
                 handler_timeout: float | None = 60.0, heartbeat: float = DEFAULT_HEARTBEAT,
                 drain_timeout: float = 30.0, tracer: Tracer | None = None,
                 control_exchange: str = CONTROL_EXCHANGE, topology: Topology | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
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
        self._handlers: dict[str, dict[str, Registration]] = {}
        self._links: _Links | None = None
        self._wake = asyncio.Event()  # a ping or a stop: announce or leave now
        self._in_flight: set[asyncio.Task[None]] = set()
        self._started = datetime.now(UTC)

    @classmethod
    def from_config(cls, name: str, config: Config, *, queue: str, **options: Any) -> Service:
        """A service using a configuration directory's registry and dead-letter exchange."""
        return cls(name, queue=queue, registry=config.registry,
                   dead_letter_exchange=config.topology.dead_letter.exchange,
                   topology=config.topology, **options)

    # -- registration ---------------------------------------------------------------------

    def handler(self, message_type: str, *, versions: Iterable[int] = (),
                queue: str | None = None, retry: RetryPolicy | None = None
                ) -> Callable[[Handler], Handler]:
        """Register the decorated coroutine for ``message_type`` (schema ``versions``: any
        when empty) on ``queue`` (default: the service's queue)."""
        on = queue or self.queue

        def register(function: Handler) -> Handler:
            handlers = self._handlers.setdefault(on, {})
            if message_type in handlers:
                raise ValueError(f"{self.name}: {message_type} already has a handler on {on}")
            handlers[message_type] = Registration(message_type, function,
                                                  frozenset(versions), retry)
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

    def _policy(self, registration: Registration | None) -> RetryPolicy:
        return (registration.retry if registration else None) or self.retry

    def retry_delays(self, queue: str) -> tuple[float, ...]:
        """Every broker delay the retry policies of ``queue``'s handlers use, ascending."""
        return tuple(sorted({d for r in [None, *self._handlers.get(queue, {}).values()]
                             for d in self._policy(r).delays}))

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
                    c.close_callbacks.add(lambda *_, lost=lost: lost.set())
                try:
                    async with self.running(consume, publish):
                        backoff = 1.0
                        await _first(stop.wait(), lost.wait())
                finally:
                    for c in (publish, consume):
                        with contextlib.suppress(*_CHANNEL_GONE, asyncio.TimeoutError):
                            await c.close()
                if stop.is_set():
                    return
                log.warning("%s: connection to the broker lost; reconnecting", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 30.0)

    @contextlib.asynccontextmanager
    async def running(self, connection: AbstractConnection,
                      publish_connection: AbstractConnection | None = None
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

    async def _serve(self, connection: AbstractConnection, publish: AbstractConnection,
                     stop: asyncio.Event, ready: asyncio.Event) -> None:
        links = self._links = _Links(connection, publish)
        try:
            await self._declare(links)
            async with asyncio.TaskGroup() as group:
                intake = [await self._consume(links, queue, group) for queue in self.queues]
                await self._listen_for_pings(links)
                group.create_task(self._heartbeats(links, stop))
                ready.set()
                log.info("%s: %s consuming %s", self.name, self.instance, ", ".join(self.queues))
                for warning in self.warnings():
                    log.warning("%s: %s", self.name, warning)
                await stop.wait()
                for queue, tag in intake:  # stop intake; what is in flight finishes below
                    with contextlib.suppress(*_CHANNEL_GONE, asyncio.TimeoutError):
                        await queue.cancel(tag)
                await self._drain()
            await self._say_goodbye(links)
        finally:
            await links.close()
            self._links = None

    async def _declare(self, links: _Links) -> None:
        channel = await links.channel(links.consume)
        for queue in self.queues:
            try:
                await channel.declare_queue(queue, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity as exc:
                raise MissingQueue(f"{self.name}: queue {queue!r} does not exist "
                                   "(mcp-router apply declares the topology)") from exc
        try:
            await channel.declare_exchange(self.dead_letter_exchange, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise MissingQueue(f"{self.name}: dead-letter exchange "
                               f"{self.dead_letter_exchange!r} does not exist "
                               "(mcp-router apply declares the topology)") from exc
        await declare_queues(links.consume, tuple(
            Topology().retry_queue(retry_queue_name(queue, delay), delay, target=queue)
            for queue in self.queues for delay in self.retry_delays(queue)))
        control = await links.channel(links.publish)
        links.control = await control.declare_exchange(self.control_exchange,
                                                       aio_pika.ExchangeType.TOPIC, durable=True)

    async def _consume(self, links: _Links, queue_name: str, group: asyncio.TaskGroup
                       ) -> tuple[AbstractQueue, str]:
        channel = await links.channel(links.consume)
        await channel.set_qos(prefetch_count=self.concurrency)
        queue = await channel.get_queue(queue_name, ensure=False)
        slots = asyncio.Semaphore(self.concurrency)

        async def on_message(message: AbstractIncomingMessage) -> None:
            await slots.acquire()
            try:
                task = group.create_task(self._deliver(queue_name, message, slots))
            except RuntimeError:  # the group is closing: leave the message to the broker
                slots.release()
                with contextlib.suppress(*_CHANNEL_GONE):
                    await message.nack(requeue=True)
                return
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

        return queue, await queue.consume(on_message)

    async def _drain(self) -> None:
        """Wait for the handlers in flight; after ``drain_timeout`` cancel (and requeue) them."""
        if not self._in_flight:
            return
        _done, late = await asyncio.wait(set(self._in_flight), timeout=self.drain_timeout)
        for task in late:
            task.cancel()

    # -- discovery ------------------------------------------------------------------------

    async def _listen_for_pings(self, links: _Links) -> None:
        channel = await links.channel(links.consume)
        await channel.declare_exchange(self.control_exchange, aio_pika.ExchangeType.TOPIC,
                                       durable=True)
        pings = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await pings.bind(self.control_exchange, PING_KEY)

        async def on_ping(_message: AbstractIncomingMessage) -> None:
            self._wake.set()

        await pings.consume(on_ping, no_ack=True)

    async def _publish_control(self, links: _Links, routing_key: str, body: bytes) -> None:
        if links.control is None:
            return
        # Not persistent, and stale after three heartbeats: nobody needs an old heartbeat.
        await links.control.publish(aio_pika.Message(
            body, content_type="application/json", type=ANNOUNCEMENT_TYPE, app_id=self.name,
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            expiration=3 * self.heartbeat), routing_key=routing_key)

    async def _heartbeats(self, links: _Links, stop: asyncio.Event) -> None:
        """Announce now, then at every heartbeat and on every ping, until ``stop``."""
        while not stop.is_set():
            self._wake.clear()
            try:
                await self._publish_control(links, announce_key(self.name),
                                            self.announcement().encode())
            except (TimeoutError, *_CHANNEL_GONE) as exc:
                log.warning("%s: cannot announce: %s", self.name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.heartbeat)

    async def _say_goodbye(self, links: _Links) -> None:
        try:
            await self._publish_control(links, goodbye_key(self.name),
                                        goodbye(self.name, self.instance))
        except (TimeoutError, *_CHANNEL_GONE) as exc:
            log.warning("%s: cannot say goodbye: %s", self.name, exc)

    # -- one delivery ---------------------------------------------------------------------

    async def _deliver(self, queue: str, message: AbstractIncomingMessage,
                       slots: asyncio.Semaphore) -> None:
        """Handle one delivery and settle it: ack, or requeue when its outcome failed."""
        acked = False
        try:
            envelope = envelope_of(message)
            span = self.tracer.start_span(
                process_name(envelope), extract(envelope.properties.headers), SpanKind.CONSUMER,
                process_attributes(envelope, queue=queue, delivery_tag=message.delivery_tag,
                                   server=None))
            with use_span(span, end_on_exit=True, record_exception=False):
                state = state_of(envelope, self._serving().user)
                acked = await self._handle(_Delivery(queue, envelope, state, span))
        except asyncio.CancelledError:
            with contextlib.suppress(*_CHANNEL_GONE):  # shutting down: back to the queue
                await asyncio.shield(message.nack(requeue=True))
            raise
        except Exception:
            log.exception("%s: unexpected error handling %s; requeued", self.name,
                          message.message_id)
        finally:
            slots.release()
        try:
            if acked:
                await message.ack()
            else:
                await message.nack(requeue=True)
        except _CHANNEL_GONE as exc:  # the broker requeues it when the channel is gone
            log.warning("%s: cannot settle %s: %s", self.name, message.message_id, exc)

    async def _handle(self, d: _Delivery) -> bool:
        """Whatever happens to the delivery; True to ack it, False to requeue it."""
        decision = dispatch(d.envelope, self._handlers.get(d.queue, {}), self.registry,
                            self.name)
        if isinstance(decision, Refuse):
            log.warning("%s: %s %s dead-lettered as %s: %s", self.name, decision.message_type,
                        d.message_id, decision.reason.value, decision.error)
            record_failure(d.span, decision.reason.value, decision.error)
            return await self._dead_letter(d, decision.reason, decision.error,
                                           decision.message_type, attempts=d.state.attempts)
        claim = await self._claim(d.message_id)
        if claim is Seen.DONE:
            log.info("%s: %s already handled: duplicate acked", self.name, d.message_id)
            d.span.add_event("duplicate")
            return True
        if claim is Seen.BUSY:
            return await self._recheck_later(d, decision)
        try:
            failure = await self._attempts(d, decision)
        except BaseException:
            await self._release(claim)
            raise
        if failure is None:
            await self._done(claim)
            return True
        await self._release(claim)
        return await self._failed(d, decision, failure)

    async def _attempts(self, d: _Delivery, decision: Dispatch) -> _Failure | None:
        """This round's in-process calls (tenacity); None when one succeeded."""
        registration = decision.registration
        policy = self._policy(registration)
        waits = policy.backoff_delays()
        calls = 0

        def wait(retry_state: RetryCallState) -> float:
            return waits[min(retry_state.attempt_number, len(waits)) - 1] if waits else 0.0

        def note(retry_state: RetryCallState) -> None:
            outcome = retry_state.outcome
            error = outcome.exception() if outcome is not None else None
            log.info("%s: %s attempt %d failed: %s", self.name, d.message_id,
                     d.state.attempts + calls, error)

        # A fresh AsyncRetrying per delivery: it keeps per-run state (STYLE.md).
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts), wait=wait,
            retry=retry_if_not_exception_type(PermanentError), sleep=self._sleep,
            before_sleep=note, reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    calls += 1
                    ctx = context_of(d.envelope, decision, queue=d.queue,
                                     attempt=d.state.attempts + calls)
                    async with asyncio.timeout(self.handler_timeout):
                        await registration.handler(decision.message.body, ctx)
        except Exception as exc:  # noqa: BLE001 -- whatever a handler raises is its failure
            return _Failure(exc, calls)
        return None

    async def _failed(self, d: _Delivery, decision: Dispatch, failure: _Failure) -> bool:
        record_failure(d.span, type(failure.error).__name__, str(failure.error))
        attempts = d.state.attempts + failure.calls
        step = GiveUp(Reason.HANDLER_FAILED) if failure.permanent \
            else next_step(self._policy(decision.registration), d.state)
        match step:
            case RetryLater(delay=delay):
                log.warning("%s: %s failed %d times (%s); retrying in %s s", self.name,
                            d.message_id, attempts, failure.text(), delay)
                return await self._park(d, replace(d.state, attempts=attempts,
                                                   retries=d.state.retries + 1),
                                        delay=delay, error=failure.text())
            case GiveUp(reason=reason):
                log.error("%s: %s failed %d times (%s); dead-lettered", self.name,
                          d.message_id, attempts, failure.text())
                return await self._dead_letter(d, reason, failure.text(),
                                               decision.message.message_type,
                                               attempts=attempts)

    async def _recheck_later(self, d: _Delivery, decision: Dispatch) -> bool:
        """Another delivery of this id is being handled (or the store is down): look again
        after the first broker delay, without counting an attempt."""
        delays = self._policy(decision.registration).delays
        if not delays:
            await self._sleep(BUSY_DELAY)
            return False
        return await self._park(d, d.state, delay=delays[0],
                                error="message id is being handled by another delivery")

    async def _park(self, d: _Delivery, state: HandlerState, *, delay: float,
                    error: str) -> bool:
        routing_key, properties = park(d.envelope, state, queue=d.queue, delay=delay,
                                       error=error, own_user=self._serving().user)
        return await self._send("", routing_key, d.envelope, properties)

    async def _dead_letter(self, d: _Delivery, reason: Reason, error: str,
                           message_type: str | None, *, attempts: int) -> bool:
        routing_key, properties = dead_letter(
            d.envelope, d.state, reason=reason, error=error, message_type=message_type,
            queue=d.queue, service=self.name, attempts=attempts, now=datetime.now(UTC),
            trace=inject(d.span))
        return await self._send(self.dead_letter_exchange, routing_key, d.envelope, properties)

    async def _send(self, exchange: str, routing_key: str, envelope: Envelope,
                    properties: Properties) -> bool:
        """Publish confirmed; on failure pause, so a requeue does not spin."""
        try:
            await self._serving().send(exchange, routing_key, envelope.body, properties)
        except DeliveryFailed as exc:
            log.error("%s: cannot publish %s to %r/%r: %s; requeued", self.name,
                      envelope.properties.message_id, exchange, routing_key, exc)
            await self._sleep(REQUEUE_PAUSE)
            return False
        return True

    def _serving(self) -> _Links:
        if self._links is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._links

    # -- idempotency ----------------------------------------------------------------------

    async def _claim(self, message_id: str | None) -> Claimed | Seen | None:
        """None when there is nothing to claim; a store that fails counts as busy."""
        if self.idempotency is None or not message_id:
            return None
        try:
            return await self.idempotency.claim(f"{self.name}:{message_id}")
        except Exception as exc:  # noqa: BLE001 -- any store failure: handle nothing blind
            log.warning("%s: idempotency store unavailable (%s); %s retried later",
                        self.name, exc, message_id)
            return Seen.BUSY

    async def _done(self, claim: Claimed | None) -> None:
        if claim is not None and self.idempotency is not None:
            try:
                await self.idempotency.done(claim)
            except Exception as exc:  # noqa: BLE001 -- handled already; a duplicate may rerun
                log.warning("%s: cannot record %s as handled: %s", self.name, claim.key, exc)

    async def _release(self, claim: Claimed | None) -> None:
        if claim is not None and self.idempotency is not None:
            try:
                await asyncio.shield(self.idempotency.release(claim))
            except Exception as exc:  # noqa: BLE001 -- the claim then expires by its TTL
                log.warning("%s: cannot release %s: %s", self.name, claim.key, exc)


async def _first(*waits: Awaitable[Any]) -> None:
    """Return when the first of ``waits`` finishes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()

