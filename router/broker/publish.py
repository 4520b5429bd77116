"""Publishing that keeps its promise: confirmed, mandatory, retried briefly.

``ChannelPool`` spreads publishes over several confirming channels of the
router's publishing link (``router.broker.amqplink``), so confirms are
pipelined.  A returned (unroutable) message is matched to its publish by
``message_id`` (``router.broker.linkchannel``), so two copies with one id in
flight on one channel could swap results: the pool never puts a
``message_id`` on a channel where that id is still unconfirmed.  A channel
closed by the broker (a publish to a missing exchange closes it with 404) is
reopened on next use; the copy the 404 names is unroutable, the others that
were in flight on the channel are transient failures, tried again.

``Publisher.publish`` retries one copy in process with tenacity, waiting as
its ``RetryPolicy`` says; the sleep is injectable so tests never wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from router.broker.amqplink import Link
from router.broker.failures import failure_of, publish_failure
from router.broker.frames import Publish
from router.broker.linkchannel import LinkChannel
from router.config.policies import RetryPolicy
from router.core.counts import plural
from router.core.envelope import Properties
from router.core.ladder import backoff_after
from router.errors import DeliveryFailed, NotFound, TransientFailure, Unroutable, Unsendable

log = logging.getLogger("router.publish")

__all__ = ["ChannelPool", "Channels", "Delivered", "Failed", "PublishResult", "Publisher"]

# Seconds per attempt.  A confirm that only comes later is still a success the
# broker will honour, so a timeout that fires early duplicates the copy: keep it
# generous (a loaded 2-core broker has taken seconds to confirm), and far below
# the 30-minute consumer timeout.
CONFIRM_TIMEOUT = 15.0
MISSING_EXCHANGE_BACKOFF = 0.5  # seconds between publishes probing a missing exchange

Sleep = Callable[[float], Awaitable[None]]


class Channels(Protocol):
    """Where single publish attempts go: ``ChannelPool`` on the broker, or a fake in tests."""

    async def publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: Properties) -> None:
        """Publish once and wait for the confirm; raise ``DeliveryFailed`` if not confirmed."""

    async def wait_usable(self, within: float) -> bool:
        """Wait (at most ``within`` s) until publishing can work; False if it still cannot."""


class ChannelPool:
    """Confirming channels of one ``Link``; one in-flight copy per id per channel."""

    def __init__(self, link: Link, size: int) -> None:
        self._link = link
        self._channels: list[LinkChannel | None] = [None] * size
        self._busy: list[set[str]] = [set() for _ in range(size)]
        self._waiters: list[asyncio.Future[None]] = []
        self._next = 0
        self._locks = [asyncio.Lock() for _ in range(size)]
        self._missing: dict[str, float] = {}  # exchange -> monotonic time to probe again

    async def _open(self, index: int) -> LinkChannel:
        async with self._locks[index]:
            channel = self._channels[index]
            if channel is None or channel.is_closed:
                channel = self._channels[index] = await self._link.channel(confirms=True)
            return channel

    async def _acquire(self, message_id: str) -> int:
        size = len(self._busy)
        while True:
            for step in range(size):
                index = (self._next + step) % size
                if message_id not in self._busy[index]:
                    self._busy[index].add(message_id)
                    self._next = index + 1
                    return index
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _release(self, index: int, message_id: str) -> None:
        self._busy[index].discard(message_id)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: Properties, confirm_timeout: float = CONFIRM_TIMEOUT) -> None:
        """Publish once, mandatory, and wait for the confirm; raise ``DeliveryFailed``."""
        missing_until = self._missing.get(exchange)
        if missing_until is not None:
            if time.monotonic() < missing_until:
                raise Unroutable(f"exchange {exchange!r} does not exist (NOT_FOUND); "
                                 "not published, to keep the channel open")
            del self._missing[exchange]  # time for one probe
        message_id = properties.message_id or ""
        index = await self._acquire(message_id)
        try:
            channel = self._channels[index]
            if channel is None or channel.is_closed:
                channel = await self._open(index)
            await channel.publish(Publish(exchange, routing_key), body, properties,
                                  within=confirm_timeout)
        except Exception as exc:
            failure = failure_of(exc)
            if isinstance(failure, NotFound):
                # RabbitMQ closes the channel on a publish to a missing exchange, failing
                # every publish in flight on it.  Only the copy the 404 names is
                # unroutable (and its exchange is not tried again for a moment, rather
                # than reopening channels in a storm); its neighbours on the channel
                # may well succeed on the next try.
                if f"exchange '{exchange}'" not in str(failure):
                    raise TransientFailure(f"the channel closed under this copy: {failure}") \
                        from exc
                self._missing[exchange] = time.monotonic() + MISSING_EXCHANGE_BACKOFF
            raise publish_failure(exc) from exc
        finally:
            self._release(index, message_id)

    async def wait_usable(self, within: float) -> bool:
        """Wait until the connection is open and not blocked by a broker alarm.

        RabbitMQ blocks publishing connections during a memory or disk alarm
        (``connection.blocked``); publishing then only times out.
        """
        if self._link.is_closed:
            return False
        try:
            await asyncio.wait_for(self._link.unblocked.wait(), within)
        except TimeoutError:
            return False
        return not self._link.is_closed

    async def close(self) -> None:
        """Close every open channel."""
        for channel in self._channels:
            if channel is not None and not channel.is_closed:
                await channel.close()


@dataclass(frozen=True, slots=True)
class Delivered:
    attempts: int


@dataclass(frozen=True, slots=True)
class Failed:
    attempts: int
    error: DeliveryFailed


PublishResult = Delivered | Failed


class Publisher:
    """Publishes one copy with in-process retries; never raises ``DeliveryFailed``."""

    def __init__(self, pool: Channels, sleep: Sleep = asyncio.sleep) -> None:
        self._pool = pool
        self.sleep = sleep

    async def wait_usable(self, within: float) -> bool:
        """Wait until the broker accepts publishes again (see ``ChannelPool.wait_usable``)."""
        return await self._pool.wait_usable(within)

    async def publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: Properties, policy: RetryPolicy) -> PublishResult:
        """Try up to ``policy.attempts`` times; the result says how it ended."""
        try:
            # The first attempt outside tenacity: almost every publish succeeds here,
            # and building a retry loop for it would cost more than the publish.
            await self._pool.publish(exchange, routing_key, body, properties)
        except DeliveryFailed as exc:
            log.warning("publish to %r [%s] of %s failed, attempt 1 of %d: %s", exchange,
                        routing_key, properties.message_id, policy.attempts, exc)
            if policy.attempts <= 1 or isinstance(exc, Unsendable):  # encodes no better later
                return Failed(1, exc)
        else:
            return Delivered(1)
        delays = policy.backoff_delays()  # delays[i]: the sleep before attempt i + 2

        def wait(state: RetryCallState) -> float:
            # tenacity's attempt 1 is attempt 2 overall; it asks for a wait even
            # after the last attempt, before its stop check.
            return backoff_after(delays, state.attempt_number + 1)

        # Tenacity drives attempts 2..n; a fresh AsyncRetrying per call, since it
        # keeps per-run state (STYLE.md).
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts - 1),
            wait=wait,
            retry=retry_if_exception_type(DeliveryFailed),
            sleep=self.sleep,
            reraise=True,
        )
        attempts = 1
        await self.sleep(delays[0])
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    await self._pool.publish(exchange, routing_key, body, properties)
        except DeliveryFailed as exc:
            log.warning("publish to %r [%s] of %s failed after %s: %s", exchange,
                        routing_key, properties.message_id, plural(attempts, "attempt"), exc)
            return Failed(attempts, exc)
        return Delivered(attempts)

    @staticmethod
    def is_transient(result: PublishResult) -> bool:
        """True when a failed publish may succeed if the whole message is tried again."""
        return isinstance(result, Failed) and isinstance(result.error, TransientFailure)
