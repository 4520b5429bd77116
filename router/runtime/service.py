"""The router's lifetime: connect, declare, consume, drain, recover.

One *session* is two aio-pika connections (declaring, the control exchange,
watching queues) and two of the router's own links (``router.broker.amqplink``: the
ingress consumer on one, the copies published on the other; consuming and
publishing are separate: a memory alarm blocks publishing connections, and acks
on a shared one would stall, STYLE.md), the topology declared, a consumer and
its deliveries in one ``asyncio.TaskGroup``.  If either connection (or the consuming channel) is
lost the session ends as a whole: unacked deliveries return to the queue
(at-least-once, possibly duplicated) and a new session starts after a
jittered backoff (``router.core.backoff``), on the next node of the cluster that
answers; a session that routed for a while resets the backoff.  ``stop`` (SIGTERM)
stops intake, lets the workers finish what was delivered, flushes the acks,
then cancels the consumer (its cancel-ok says the queue has the acks:
``router.broker.consume``) and returns; only then do the connections close.
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

from opentelemetry import trace

from router.broker.amqp import (
    CONNECT_TIMEOUT,
    Connection,
    broker_address,
    broker_cause,
    close_quietly,
    connect,
    connect_first,
    redact,
)
from router.broker.amqplink import open_link
from router.broker.control import listen, ping
from router.broker.declare import declare_config
from router.broker.publish import ChannelPool, Publisher, Sleep
from router.broker.settle import Settler
from router.broker.shadows import ShadowLink, ShadowSender
from router.config.configuration import Config
from router.config.keys import unwrap
from router.config.reload import ReloadResult, prepare_reload
from router.core.backoff import Backoff, next_node
from router.core.breakers import Breaker, BreakerBoard, Breakers, State
from router.core.sealing import Sealer
from router.discovery.liveroutes import Consumers
from router.errors import BrokerUnavailable, ConfigError, Problem, TopologyConflict
from router.observe.journal import Journal
from router.observe.metrics import Metrics
from router.observe.tracing import PropagatingTracer
from router.runtime.collector import pace_collector
from router.runtime.intake import Intake
from router.runtime.loads import LoadBoard
from router.runtime.settings import Settings
from router.runtime.sharedlimit import RateLimiter

__all__ = ["RouterService", "Settings"]

log = logging.getLogger("router.service")

SETUP_TIMEOUT = 30.0  # seconds for declaring the topology and opening the consumer
CLOSE_TIMEOUT = 5.0


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
    server: tuple[str, int] | None = None  # the node's host and port, for span attributes
    _ready_since: float | None = None
    _publish_conn: Connection | None = None  # of the current session, for reloads
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
        pace_collector()
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
                self.set_ready(False)
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

    def set_ready(self, ready: bool) -> None:
        self.ready = ready
        self._ready_since = time.monotonic() if ready else self._ready_since
        self.metrics.connected.set(1 if ready else 0)

    async def _session(self, stop: asyncio.Event) -> None:
        async with contextlib.AsyncExitStack() as stack:
            await self._routing(stop, stack)

    async def _routing(self, stop: asyncio.Event, stack: contextlib.AsyncExitStack) -> None:
        """One session: aio-pika connections to declare, listen and watch; the router's own
        links (``router.broker.amqplink``) to consume the ingress and publish the copies."""
        urls, heartbeat = self.settings.urls, self.settings.heartbeat
        consume_conn, index = await connect_first(
            urls, "mcp-router consume", next_node(len(urls), self._node_index),
            heartbeat=heartbeat)
        stack.push_async_callback(close_quietly, consume_conn)
        self._node_index, self.node = index, redact(urls[index])
        self.server = broker_address(urls[index])
        publish_conn = await connect(urls[index], "mcp-router publish", heartbeat=heartbeat)
        stack.push_async_callback(close_quietly, publish_conn)
        lost = asyncio.Event()
        links = []
        for name in ("mcp-router intake", "mcp-router copies"):
            link = await open_link(urls[index], name, heartbeat=heartbeat,
                                   within=CONNECT_TIMEOUT)
            stack.push_async_callback(link.close, CLOSE_TIMEOUT)
            links.append(link)
        intake_link, copies_link = links
        for conn in (consume_conn, publish_conn):
            conn.close_callbacks.add(lambda *_: lost.set())
        for link in links:
            link.on_close(lambda _exc: lost.set())
        shadow_link = ShadowLink(self.settings.amqp_url)  # connects when a shadow copy goes
        stack.push_async_callback(shadow_link.close)
        self._publish_conn = publish_conn
        try:
            # A broker that is still recovering its queues can leave these hanging.
            async with asyncio.timeout(SETUP_TIMEOUT):
                await declare_config(publish_conn, self.config)
                channel = await intake_link.channel(prefetch=self.settings.prefetch)
                # The broker closes a channel on its own (consumer_timeout): that
                # ends the session too, or intake would stop for good.
                channel.on_close(lambda _exc: lost.set())
                control = self.config.topology.control.exchange
                await listen(consume_conn, self.consumers.heard, self.consumers.left, control)
                await ping(publish_conn, control)
                self.consumers.listening()
        except TimeoutError as exc:
            raise BrokerUnavailable(f"the broker did not answer within {SETUP_TIMEOUT:.0f}s "
                                    "while declaring the topology") from exc
        pool = ChannelPool(copies_link, self.settings.publish_channels)
        settler = Settler(Publisher(pool, self.sleep), self.metrics, tracer=self.tracer,
                          router_user=self.settings.user,
                          hold_limit=self.settings.hold_limit, breakers=self.breakers,
                          holds=self.consumers.holds, journal=self.journal,
                          shadows=ShadowSender(shadow_link, self.metrics, self.tracer),
                          sealer=self.sealer)
        await Intake(self).consume(channel, settler, stop, lost, consume_conn)

