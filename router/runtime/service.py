"""The router's lifetime: connect, declare, consume, drain, recover.

One *session* is two connections (consuming and publishing are separate: a
memory alarm blocks publishing connections, and acks on a shared one would
stall, STYLE.md), the topology declared, a consumer and its workers in one
``asyncio.TaskGroup``.  If either connection (or the consuming channel) is
lost the session ends as a whole: unacked deliveries return to the queue
(at-least-once, possibly duplicated) and a new session starts after a
jittered backoff (``router.core.backoff``), on the next node of the cluster that
answers; a session that routed for a while resets the backoff.  ``stop`` (SIGTERM)
cancels the consumer, lets the workers finish what was delivered, flushes the
acks and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import time
from dataclasses import dataclass, field

import aiormq.abc
from aio_pika.abc import AbstractConnection
from opentelemetry import trace

from router.broker.amqp import (
    HEARTBEAT,
    broker_address,
    broker_cause,
    broker_urls,
    broker_user,
    connect,
    connect_first,
    envelope_of,
    redact,
)
from router.broker.consume import Acker
from router.broker.control import listen, ping
from router.broker.declare import declare_config
from router.broker.publish import ChannelPool, Publisher, Sleep
from router.broker.queuewatch import watch_queues
from router.broker.settle import HOLD_LIMIT, Settler, Verdict
from router.broker.shadows import ShadowLink, ShadowSender
from router.broker.wire import Undecoded
from router.config.configuration import Config
from router.config.keys import unwrap
from router.config.reload import ReloadResult, prepare_reload
from router.core.backoff import Backoff, next_node
from router.core.breakers import Breaker, BreakerBoard, Breakers, State
from router.core.counts import plural
from router.core.envelope import Envelope
from router.core.journalnotes import arrival, decision
from router.core.outcome import DeadLetter, Delay, Forward, Outcome, Reason
from router.core.pipeline import original
from router.core.sealing import Sealer, prepare
from router.discovery.liveroutes import Consumers
from router.errors import BrokerUnavailable, ConfigError, Problem, TopologyConflict
from router.observe.conventions import record_failure, record_settlement
from router.observe.metrics import Metrics
from router.observe.tracing import Consumed, PropagatingTracer, process_span, span_trace_id
from router.runtime.journal import Journal
from router.runtime.loads import LoadBoard
from router.runtime.sharedlimit import RateLimiter

__all__ = ["RouterService", "Settings"]

log = logging.getLogger("router.service")

SETUP_TIMEOUT = 30.0  # seconds for declaring the topology and opening the consumer
CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Settings:
    """How the router runs (not what it routes: that is ``Config``)."""

    amqp_url: str  # one URL, or the nodes of a cluster comma-separated
    prefetch: int = 256
    publish_channels: int = 8
    reconnect_delay: float = 1.0
    max_reconnect_delay: float = 15.0
    healthy_after: float = 10.0  # a session routing this long resets the reconnect backoff
    reconnect_jitter: float = 0.5  # the random fraction of every reconnect wait
    heartbeat: int = HEARTBEAT
    redis_url: str | None = None  # where rate-limit rules with ``shared: true`` keep buckets
    drain_timeout: float = 30.0  # SIGTERM: how long in-flight work may take to finish
    hold_limit: float = HOLD_LIMIT  # how long a delivery may wait for a blocked broker
    kek: bytes | None = field(default=None, repr=False)  # unwraps the data keys (keys/)

    @functools.cached_property
    def user(self) -> str:
        """The broker user the router connects as (its retries carry it as ``user_id``)."""
        return broker_user(self.amqp_url)

    @functools.cached_property
    def urls(self) -> tuple[str, ...]:
        """Every broker node, in the order they are tried."""
        return broker_urls(self.amqp_url)

    def __repr__(self) -> str:  # the URL may carry a password
        return f"Settings(prefetch={self.prefetch}, publish_channels={self.publish_channels})"


class _InFlight:
    """Counts deliveries being handled; ``idle`` waits until there are none."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def __enter__(self) -> None:
        self.count += 1
        self._idle.clear()

    def __exit__(self, *_: object) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def idle(self) -> None:
        await self._idle.wait()


@dataclass
class RouterService:
    """Routes ingress messages until ``stop`` is set. Re-connects on its own."""

    config: Config
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    tracer: trace.Tracer = field(default_factory=PropagatingTracer)
    sleep: Sleep = asyncio.sleep
    ready: bool = False
    last_error: str | None = None
    last_reload: ReloadResult | None = None
    journal: Journal = field(default_factory=Journal)  # recent messages, for follow
    node: str | None = None  # the node of the current (or last) session, password redacted
    _node_index: int | None = None
    _server: tuple[str, int] | None = None  # the node's host and port, for span attributes
    _ready_since: float | None = None
    _publish_conn: AbstractConnection | None = None  # of the current session, for reloads
    _sealers: tuple[Config, Sealer | None] | None = None  # the data keys of one configuration
    limiter: RateLimiter = field(init=False)
    breakers: BreakerBoard = field(init=False)
    consumers: Consumers = field(init=False)
    loads: LoadBoard = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.config.topology.ingress.queue, self.settings.redis_url)
        self.breakers = BreakerBoard(self._breaker_changed)
        self.consumers = Consumers(self.metrics, lambda: self.config.topology)
        self.loads = LoadBoard(self.metrics)

    def _breaker_changed(self, breaker: Breaker, old: State) -> None:
        level = {State.OPEN: logging.WARNING, State.HALF_OPEN: logging.INFO,
                 State.CLOSED: logging.INFO}[breaker.state]
        self.metrics.circuit_state.labels(breaker.destination).set(
            {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}[breaker.state])
        if old is not breaker.state:
            self.metrics.circuit_transitions.labels(breaker.destination,
                                                    breaker.state.value).inc()
            log.log(level, "circuit %s for %s%s", breaker.state.value.replace("_", "-"),
                    breaker.destination, f": {breaker.reason}" if breaker.reason else "")

    def sealer(self, config: Config) -> Sealer | None:
        """The data keys of ``config`` unwrapped (None when it has none); ``ConfigError`` when
        its schemas mark sensitive fields and the keys cannot be had."""
        if self._sealers is not None and self._sealers[0] is config:
            return self._sealers[1]
        sealer = None
        if config.registry.sensitive or (config.keys.names and self.settings.kek):
            if self.settings.kek is None:
                raise ConfigError([Problem(str(config.directory), "schemas mark sensitive "
                                           "fields: set MCP_KEK_FILE or MCP_KEK to the "
                                           "key-encryption key of keys/")])
            keyring = unwrap(config.keys, self.settings.kek, config.policies.encryption.key)
            sealer = Sealer(keyring, os.urandom)
        self._sealers = (config, sealer)
        return sealer

    def current_breakers(self) -> Breakers:
        """The breakers of the configuration in force."""
        return self.breakers.of(self.config.policies.circuit_breakers, self.config.topology,
                                time.monotonic())

    def circuits(self) -> dict[str, dict[str, object]]:
        """Every destination's breaker, for ``/readyz``."""
        return self.current_breakers().snapshot(time.monotonic())

    async def reload(self) -> ReloadResult:
        """Check the configuration directory again and swap it in between messages.

        A configuration that does not check, or asks for what RabbitMQ cannot do
        in place, leaves the running one untouched; the result says why.
        """
        conn = self._publish_conn
        declare = None if conn is None or conn.is_closed else \
            functools.partial(declare_config, conn)
        new, result = await prepare_reload(self.config, declare)
        if new is not None:
            try:
                self.sealer(new)
            except ConfigError as exc:
                problems = tuple(str(p) for p in exc.problems)
                new, result = None, ReloadResult(False, problems=problems)
        if new is not None:
            self.config = new  # each message reads self.config once: atomic between messages
        self.last_reload = result
        self.metrics.reloads.labels("ok" if result.ok else "failed").inc()
        for line in result.changes:
            log.info("reload: %s", line)
        for line in result.problems:
            log.error("reload refused: %s", line)
        log.log(logging.INFO if result.ok else logging.ERROR,
                "configuration %s", "reloaded" if result.ok else "NOT reloaded; still running "
                "the previous one")
        return result

    async def run(self, stop: asyncio.Event) -> None:
        """Run sessions until ``stop``; raise only for problems a restart cannot fix."""
        self.sealer(self.config)  # data keys that do not unwrap: ConfigError before connecting
        try:
            await self._sessions(stop)
        finally:
            await self.limiter.close()

    async def _sessions(self, stop: asyncio.Event) -> None:
        s = self.settings
        backoff = Backoff(s.reconnect_delay, s.max_reconnect_delay, s.healthy_after,
                          s.reconnect_jitter)
        while not stop.is_set():
            self._ready_since = None
            failure: str | None = None  # the broker went away
            bug: str | None = None  # anything else ended the session
            try:
                await self._session(stop)
            except TopologyConflict:
                raise
            except Exception as exc:  # a bug must not end the service either: start afresh
                lost = broker_cause(exc)  # the TaskGroup wraps what its tasks raised
                failure = str(lost) or type(lost).__name__ if lost is not None else None
                bug = None if lost is not None else f"{type(exc).__name__}: {exc}"
                log.debug("the session ended with", exc_info=exc)
            finally:
                healthy = 0.0 if self._ready_since is None else \
                    time.monotonic() - self._ready_since
                self._set_ready(False)
            if failure is None and bug is None:
                backoff.reset()
                continue
            self.last_error = failure or bug
            self.metrics.sessions_lost.inc()
            delay = backoff.after_session(healthy, random.random())  # noqa: S311 -- jitter
            if bug is not None:
                log.error("broker session failed unexpectedly (%s); reconnecting in %.2fs "
                          "(MCP_LOG_LEVEL=DEBUG shows the traceback)", bug, delay)
            else:
                log.warning("broker session on %s ended after %.1fs routing: %s; reconnecting "
                            "in %.2fs", self.node or "no node", healthy, failure, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    def _set_ready(self, ready: bool) -> None:
        self.ready = ready
        self._ready_since = time.monotonic() if ready else self._ready_since
        self.metrics.connected.set(1 if ready else 0)

    async def _session(self, stop: asyncio.Event) -> None:
        urls, heartbeat = self.settings.urls, self.settings.heartbeat
        consume_conn, index = await connect_first(
            urls, "mcp-router consume", next_node(len(urls), self._node_index),
            heartbeat=heartbeat)
        self._node_index, self.node = index, redact(urls[index])
        self._server = broker_address(urls[index])
        try:
            publish_conn = await connect(urls[index], "mcp-router publish", heartbeat=heartbeat)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consume_conn.close(), CLOSE_TIMEOUT)
            raise
        lost = asyncio.Event()
        for conn in (consume_conn, publish_conn):
            conn.close_callbacks.add(lambda *_: lost.set())
        pool = ChannelPool(publish_conn, self.settings.publish_channels)
        shadow_link = ShadowLink(self.settings.amqp_url)  # connects when a shadow copy goes
        self._publish_conn = publish_conn
        try:
            try:
                # A broker that is still recovering its queues can leave these hanging.
                async with asyncio.timeout(SETUP_TIMEOUT):
                    await declare_config(publish_conn, self.config)
                    channel = await consume_conn.channel(publisher_confirms=False)
                    # The broker closes a channel on its own (consumer_timeout): that
                    # ends the session too, or intake would stop for good.
                    channel.close_callbacks.add(lambda *_: lost.set())
                    underlay = await channel.get_underlay_channel()
                    await underlay.basic_qos(prefetch_count=self.settings.prefetch)
                    control = self.config.topology.control.exchange
                    await listen(consume_conn, self.consumers.heard, self.consumers.left,
                                 control)
                    await ping(publish_conn, control)
                    self.consumers.listening()
            except TimeoutError as exc:
                raise BrokerUnavailable(f"the broker did not answer within {SETUP_TIMEOUT:.0f}s "
                                        "while declaring the topology") from exc
            settler = Settler(Publisher(pool, self.sleep), self.metrics, tracer=self.tracer,
                              router_user=self.settings.user,
                              hold_limit=self.settings.hold_limit, breakers=self.breakers,
                              holds=self.consumers.holds, journal=self.journal,
                              shadows=ShadowSender(shadow_link, self.metrics, self.tracer))
            await self._consume(underlay, settler, stop, lost, consume_conn)
        finally:
            await shadow_link.close()
            for conn in (consume_conn, publish_conn):
                with contextlib.suppress(Exception):  # a dead peer may never answer
                    await asyncio.wait_for(conn.close(), CLOSE_TIMEOUT)

    async def _consume(self, channel: aiormq.abc.AbstractChannel, settler: Settler,
                       stop: asyncio.Event, lost: asyncio.Event,
                       connection: AbstractConnection) -> None:
        acker = Acker(channel)
        in_flight = _InFlight()

        # aiormq already runs every delivery callback in a task of its own (bounded
        # by the prefetch window), so each message is handled right there: handing it
        # on to a pool of worker tasks cost about 8% of throughput for nothing.
        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            tag = message.delivery_tag
            if tag is None:
                return
            acker.started(tag)
            with in_flight:
                verdict = await self._handle(message, settler)
            acker.finished(tag, verdict)

        consume_ok = await asyncio.wait_for(
            channel.basic_consume(self.config.topology.ingress.queue, on_message), SETUP_TIMEOUT)
        self._set_ready(True)
        self.last_error = None
        log.info("routing from %s on %s", self.config.topology.ingress.queue, self.node)
        async with asyncio.TaskGroup() as group:
            ack_task = group.create_task(acker.run())
            stop_task = group.create_task(stop.wait())
            lost_task = group.create_task(lost.wait())
            watch_task = group.create_task(watch_queues(
                connection, self.current_breakers, loads=self._watched_loads,
                seen=self.loads.observe))
            services_task = group.create_task(self.consumers.watch())
            await asyncio.wait({stop_task, lost_task}, return_when=asyncio.FIRST_COMPLETED)
            watch_task.cancel()
            services_task.cancel()
            self._set_ready(False)
            if lost.is_set():
                # Unacked deliveries return to the queue with the connection; closing
                # it cancels the delivery tasks still running.
                ack_task.cancel()
                stop_task.cancel()
            else:
                lost_task.cancel()
                # Stop intake: after cancel-ok the broker sends nothing more to this
                # consumer; then wait for every delivery already received.
                if consume_ok.consumer_tag is not None:
                    with contextlib.suppress(Exception):
                        await channel.basic_cancel(consume_ok.consumer_tag)
                try:
                    await asyncio.wait_for(in_flight.idle(), self.settings.drain_timeout)
                except TimeoutError:
                    log.warning("%s still in flight after %.0fs; they go back to the queue",
                                plural(in_flight.count, "message"), self.settings.drain_timeout)
                if settler.shadows is not None:  # on the side, but let them finish
                    await settler.shadows.drain(CLOSE_TIMEOUT)
                acker.close()  # its last flush settles what was handled
        if lost.is_set():
            raise ConnectionError("connection (or consuming channel) to the broker was lost")
        log.info("drained: all in-flight messages settled")

    def _watched_loads(self) -> dict[str, float]:
        """The queues least_loaded routes want looked at, with their intervals."""
        return self.loads.layout(self.config.router, self.config.topology).watched

    async def _rate_limit(self, outcome: Forward, envelope: Envelope, config: Config) -> Outcome:
        """The outcome unchanged, or shaped or refused by a rate limit."""
        self.limiter.configure(config.policies.rate_limits)
        message_type = outcome.message.message_type
        rule = await self.limiter.take(envelope.properties.user_id, message_type)
        if rule is None:
            return outcome
        shared = ", shared by every replica" if rule.shared else ""
        why = (f"over the rate limit of rule {rule.match!r} at {rule.where} "
               f"({rule.rate:g}/s per {rule.per}{shared})")
        if rule.on_excess == "reject":
            return DeadLetter(Reason.RATE_LIMITED, why, message_type)
        return Delay(rule.shape_delay, why, message_type)

    async def _handle(self, message: aiormq.abc.DeliveredMessage, settler: Settler) -> Verdict:
        started = time.perf_counter()
        self.metrics.in_flight.inc()
        config = self.config  # one configuration for the whole message
        try:
            envelope, retry = original(envelope_of(message), self.settings.user)
            if envelope.defects:
                undecodable = isinstance(message.header.properties, Undecoded) or \
                    bool(getattr(message.delivery, "wire_problems", None))
                self.metrics.malformed_delivery("undecodable" if undecodable else "unsendable")
            if envelope.properties.timestamp is not None and retry is None:
                self.metrics.observe_age(time.time() - envelope.properties.timestamp.timestamp())
            span = process_span(self.tracer, envelope, Consumed(
                                    config.topology.ingress.queue, message.delivery_tag,
                                    self._server), retry_origin=retry.origin if retry else None,
                                retries=retry.retries if retry else 0)
            journal, message_id = self.journal, envelope.properties.message_id
            if journal.size:
                journal.record(message_id, "arrived",
                               **arrival(envelope, retry, span_trace_id(span)))
            verdict, outcome = Verdict.REQUEUE, None
            try:
                prepared = prepare(envelope, config, retry, self.sealer(config),
                                   self.loads.view(config, self.current_breakers))
                outcome, envelope = prepared.outcome, prepared.envelope
                if isinstance(outcome, Forward) and (retry is None or not retry.route):
                    outcome = await self._rate_limit(outcome, envelope, config)
                self.loads.took(outcome, config)  # what goes out now (not a shaped one)
                if isinstance(outcome, DeadLetter) and outcome.route is None \
                        and span.is_recording():
                    span.add_event("exception", {"exception.type": outcome.reason.value,
                                                 "exception.message": outcome.error[:2000]})
                    record_failure(span, outcome.reason.value, outcome.error)
                if journal.size:
                    event, detail = decision(outcome)
                    journal.record(message_id, event, **detail)
                verdict = await settler.settle(outcome, envelope, config, span)
                if verdict is Verdict.REQUEUE and journal.size:
                    journal.record(message_id, "requeued")
                return verdict
            finally:
                if span.is_recording():
                    record_settlement(span, acked=verdict is Verdict.ACK,
                                      outcome=_outcome_name(outcome, verdict))
                span.end()
        except Exception as exc:
            log.exception("unexpected error handling a message; it will be redelivered "
                          "(the ingress delivery limit stops a poison message): %s", exc)
            return Verdict.REQUEUE
        finally:
            self.metrics.in_flight.dec()
            self.metrics.observe_processing(time.perf_counter() - started)


def _outcome_name(outcome: object, verdict: Verdict) -> str:
    if verdict is Verdict.REQUEUE:
        return "requeued"
    if verdict is Verdict.REJECT:
        return "rejected"
    return "dead_lettered" if isinstance(outcome, DeadLetter) else "routed"
