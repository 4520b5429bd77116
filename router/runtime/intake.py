"""Intake: consume the ingress queue and handle each delivery, from callback to verdict.

``Intake._consume`` runs one session's consumer, acker and watchers in an
``asyncio.TaskGroup``; ``Intake._handle`` takes one delivery through
``prepare`` (decide, seal), the rate limit (``router.core.delivery``) and the
``Settler``, and returns how to settle it.  SIGTERM stops intake first, then
waits for what was delivered (``drain_timeout``).  Run for a ``RouterService``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from opentelemetry.trace import Span, Tracer

from router.broker.amqp import Connection
from router.broker.consume import ConsumeLoop, first_of
from router.broker.converter import envelope_of
from router.broker.linkchannel import Delivery, LinkChannel
from router.broker.queuewatch import watch_queues
from router.broker.settle import Settler, Verdict
from router.broker.wire import Undecoded
from router.config.configuration import Config
from router.core.breakers import Breakers
from router.core.choose import NO_VIEW
from router.core.delivery import over_rate_limit
from router.core.envelope import Envelope
from router.core.journalnotes import Note, arrival, decision
from router.core.ladder import Comeback, RetryState
from router.core.outcome import DeadCopy, DeadLetter, Forward, Outcome
from router.core.pipeline import original
from router.core.sealing import Sealer, prepare
from router.discovery.liveroutes import Consumers
from router.observe.conventions import record_failure, record_settlement
from router.observe.journal import Journal
from router.observe.metrics import Metrics
from router.observe.tracing import Received, process_span, span_trace_id
from router.runtime.loads import LoadBoard
from router.runtime.settings import Settings
from router.runtime.sharedlimit import RateLimiter

__all__ = ["Intake"]

log = logging.getLogger("router.service")

CLOSE_TIMEOUT = 5.0
SETUP_TIMEOUT = 30.0  # seconds for opening the consumer


class Routing(Protocol):
    """What intake reads and sets of the service it consumes for (``RouterService``)."""

    config: Config
    settings: Settings
    metrics: Metrics
    tracer: Tracer
    journal: Journal
    last_error: str | None
    node: str | None
    server: tuple[str, int] | None  # the node's host and port, for span attributes
    limiter: RateLimiter
    consumers: Consumers
    loads: LoadBoard

    def sealer(self, config: Config) -> Sealer | None: ...

    def current_breakers(self) -> Breakers: ...

    def set_ready(self, ready: bool) -> None: ...



class Intake:
    """The consuming half of ``RouterService``: one per session."""

    def __init__(self, service: Routing) -> None:
        self.service = service

    async def consume(self, channel: LinkChannel, settler: Settler,
                      stop: asyncio.Event, lost: asyncio.Event,
                      connection: Connection) -> None:
        """Consume until ``stop`` (drain, then return) or ``lost`` (raise ConnectionError)."""
        service = self.service
        queue = service.config.topology.ingress.queue

        async def handle(message: Delivery) -> Verdict:
            return await self._handle(message, settler)

        intake = ConsumeLoop(channel, queue, handle,
                             drain_timeout=service.settings.drain_timeout,
                             setup_timeout=SETUP_TIMEOUT)
        async with asyncio.TaskGroup() as group:
            consuming = group.create_task(intake.run(stop, lost))
            await first_of(consuming, intake.consuming)  # a failure: the group raises it
            service.set_ready(True)
            service.last_error = None
            log.info("routing from %s on %s", queue, service.node)
            watch = group.create_task(watch_queues(
                connection, service.current_breakers, loads=self._watched_loads,
                seen=service.loads.observe))
            services = group.create_task(service.consumers.watch())
            await asyncio.wait({consuming})
            watch.cancel()
            services.cancel()
            service.set_ready(False)
        if lost.is_set() or not stop.is_set():
            raise ConnectionError("connection (or consuming channel) to the broker was lost")
        if settler.shadows is not None:  # on the side, but let them finish
            await settler.shadows.drain(CLOSE_TIMEOUT)
        log.info("drained: all in-flight messages settled")

    def _watched_loads(self) -> dict[str, float]:
        """The queues least_loaded routes want looked at, with their intervals."""
        service = self.service
        return service.loads.layout(service.config.router, service.config.topology).watched

    async def _rate_limit(self, outcome: Forward, envelope: Envelope,
                          config: Config) -> Outcome:
        """The outcome unchanged, or shaped or refused by a rate limit (decided in the core)."""
        service = self.service
        service.limiter.configure(config.policies.rate_limits)
        exceeded = await service.limiter.take(envelope.properties.user_id,
                                           outcome.message.message_type)
        return over_rate_limit(outcome, exceeded)

    async def _handle(self, message: Delivery,
                      settler: Settler) -> Verdict:
        """One delivery, from the callback to its verdict; a bug requeues it (logged)."""
        service = self.service
        started = time.perf_counter()
        service.metrics.in_flight.inc()
        config = service.config  # one configuration for the whole message
        try:
            envelope, retry = original(envelope_of(message), service.settings.user)
            if envelope.defects:
                undecodable = isinstance(message.header.properties, Undecoded) or \
                    bool(getattr(message.delivery, "wire_problems", None))
                service.metrics.malformed_delivery("undecodable" if undecodable else "unsendable")
            if envelope.properties.timestamp is not None and retry is None:
                age = time.time() - envelope.properties.timestamp.timestamp()
                service.metrics.observe_age(age)
            span = process_span(service.tracer, envelope, Received(
                config.topology.ingress.queue, message.delivery_tag, service.server), retry)
            if service.journal.size:
                service.journal.record(envelope.properties.message_id, Note.ARRIVED,
                                       **arrival(envelope, retry, span_trace_id(span)))
            return await self._route(envelope, retry, config, span, settler)
        except Exception as exc:
            log.exception("unexpected error handling a message; it will be redelivered "
                          "(the ingress delivery limit stops a poison message): %s", exc)
            return Verdict.REQUEUE
        finally:
            service.metrics.in_flight.dec()
            service.metrics.observe_processing(time.perf_counter() - started)

    async def _route(self, envelope: Envelope, retry: Comeback | None, config: Config,
                     span: Span, settler: Settler) -> Verdict:
        """Decide, rate-limit and settle one message under its process span (ended here)."""
        service, journal = self.service, self.service.journal
        message_id = envelope.properties.message_id
        verdict, outcome = Verdict.REQUEUE, None
        try:
            view = service.loads.view(config, service.current_breakers) \
                if config.router.load_aware else NO_VIEW  # only least_loaded routes look
            prepared = prepare(envelope, config, retry, service.sealer(config), view)
            outcome, envelope = prepared.outcome, prepared.envelope
            if isinstance(outcome, Forward) and not isinstance(retry, RetryState) \
                    and config.policies.rate_limits:
                outcome = await self._rate_limit(outcome, envelope, config)
            if config.router.branching:  # what goes out now (not a shaped one)
                service.loads.took(outcome, config)
            if isinstance(outcome, DeadLetter) and span.is_recording():
                span.add_event("exception", {"exception.type": outcome.reason.value,
                                             "exception.message": outcome.error[:2000]})
                record_failure(span, outcome.reason.value, outcome.error)
            if journal.size:
                event, detail = decision(outcome)
                journal.record(message_id, event, **detail)
            verdict = await settler.settle(outcome, envelope, config, span)
            if verdict is Verdict.REQUEUE and journal.size:
                journal.record(message_id, Note.REQUEUED)
            return verdict
        finally:
            if span.is_recording():
                record_settlement(span, acked=verdict is Verdict.ACK,
                                  outcome=_outcome_name(outcome, verdict))
            span.end()


def _outcome_name(outcome: object, verdict: Verdict) -> str:
    if verdict is Verdict.REQUEUE:
        return "requeued"
    if verdict is Verdict.REJECT:
        return "rejected"
    return "dead_lettered" if isinstance(outcome, DeadLetter | DeadCopy) else "routed"

