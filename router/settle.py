"""Settlement: carry out an ``Outcome`` on the broker and say how to settle the delivery.

This is the only place that matches on ``Outcome``; ``assert_never`` makes the
type checker prove every case is handled.  The ingress delivery is acked only
once every copy is confirmed at its destination, parked in a retry queue, or
dead-lettered, each confirmed by the broker.

When the broker accepts nothing at all (a memory alarm blocks publishing, the
connection is gone), the delivery is *held*: the router waits until publishing
works again and carries on, instead of requeueing, which would spend the
ingress queue's delivery limit on a healthy message.  A full prefetch window
of held messages is what pauses intake during an alarm.  Holding is bounded
(``HOLD_LIMIT``); past it the delivery is requeued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import assert_never

from router.config import Config
from router.envelope import Envelope, Properties
from router.errors import Unroutable
from router.metrics import UNKNOWN, Metrics
from router.outbound import (
    copy_properties,
    dead_letter_properties,
    dead_letter_routing_key,
    retry_properties,
)
from router.outcome import Copy, DeadLetter, Forward, Outcome
from router.policies import DEFAULT_RETRY, RetryPolicy
from router.publish import Delivered, Failed, Publisher
from router.retry import GiveUp, RetryLater, RetryState, next_step, retry_queue_name

__all__ = ["HOLD_LIMIT", "Settler", "Verdict"]

log = logging.getLogger("router.settle")

HOLD_LIMIT = 300.0  # seconds a delivery may wait for the broker to accept publishes
HOLD_PAUSE = 1.0  # between two rounds of a held delivery


class Verdict(Enum):
    ACK = "ack"  # every copy, retry or dead letter is confirmed
    REQUEUE = "requeue"  # give the delivery back (counts toward the delivery limit)


def delivery_attempt(envelope: Envelope) -> int:
    """1 for a first delivery; quorum queues count redeliveries in ``x-delivery-count``."""
    count = envelope.properties.headers.get("x-delivery-count")
    return count + 1 if isinstance(count, int) and not isinstance(count, bool) else 1


@dataclass
class Settler:
    """Publishes what an outcome asks for, with metrics; returns the verdict."""

    publisher: Publisher
    metrics: Metrics
    router_user: str = "guest"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    hold_limit: float = HOLD_LIMIT

    async def settle(self, outcome: Outcome, envelope: Envelope, config: Config,
                     trace: Mapping[str, str]) -> Verdict:
        match outcome:
            case Forward():
                return await self._forward(outcome, envelope, config, trace)
            case DeadLetter():
                attempts = delivery_attempt(envelope)
                return await self._dead_letter(outcome, envelope, config, trace, attempts)
            case _:
                assert_never(outcome)

    def _type_label(self, message_type: str | None, config: Config) -> str:
        known = message_type is not None and message_type in config.registry
        return message_type if known and message_type is not None else UNKNOWN

    async def _forward(self, outcome: Forward, envelope: Envelope, config: Config,
                       trace: Mapping[str, str]) -> Verdict:
        message_type = outcome.message.message_type
        policy = config.policies.retry_for(message_type)
        deliveries = [self._copy(copy, envelope, config, trace, policy=policy,
                                 prior=outcome.retry, message_type=message_type)
                      for copy in outcome.copies]
        verdicts = [await deliveries[0]] if len(deliveries) == 1 else \
            await asyncio.gather(*deliveries)
        verdict = Verdict.REQUEUE if Verdict.REQUEUE in verdicts else Verdict.ACK
        self.metrics.message("routed" if verdict is Verdict.ACK else "requeued", message_type)
        return verdict

    async def _copy(self, copy: Copy, envelope: Envelope, config: Config,
                    trace: Mapping[str, str], *, policy: RetryPolicy, prior: RetryState | None,
                    message_type: str) -> Verdict:
        """Deliver one copy, or park it for a broker-tier retry, or dead-letter it."""
        attempts = prior.attempts if prior else 0
        retries = prior.retries if prior else 0
        properties = copy_properties(envelope, copy, trace)
        deadline = time.monotonic() + self.hold_limit
        while True:
            result = await self.publisher.publish(copy.exchange, copy.routing_key,
                                                  envelope.body, properties, policy)
            attempts += result.attempts
            if result.attempts > 1:
                self.metrics.publish_retries.inc(result.attempts - 1)
            if isinstance(result, Delivered):
                self.metrics.copy(copy.route, "delivered")
                return Verdict.ACK
            step = next_step(policy, retries, result.error)
            match step:
                case RetryLater(delay=delay):
                    state = RetryState(copy.route, copy.exchange, copy.routing_key, attempts,
                                       retries + 1, str(result.error), envelope.exchange,
                                       envelope.routing_key, envelope.properties.user_id)
                    if await self._park(state, delay, envelope, config, trace=trace,
                                        policy=policy):
                        self.metrics.copy(copy.route, "retry_scheduled")
                        return Verdict.ACK
                case GiveUp(reason=reason):
                    self.metrics.copy(copy.route, "dead_lettered")
                    dead = DeadLetter(reason, f"route {copy.route!r}: {result.error}",
                                      message_type, copy.route, copy)
                    return await self._dead_letter(dead, envelope, config, trace, attempts)
                case _:
                    assert_never(step)
            if not await self._hold(deadline, envelope):
                return Verdict.REQUEUE

    async def _park(self, state: RetryState, delay: float, envelope: Envelope, config: Config,
                    *, trace: Mapping[str, str], policy: RetryPolicy) -> bool:
        """Publish the copy to the retry queue for ``delay``; True once confirmed."""
        queue = retry_queue_name(config.topology.ingress.queue, delay)
        properties = retry_properties(envelope, state, trace, self.router_user)
        result = await self.publisher.publish("", queue, envelope.body, properties, policy)
        if isinstance(result, Failed):
            log.warning("could not park %s for retry in %s: %s",
                        envelope.properties.message_id, queue, result.error)
            return False
        log.info("retry %d of %s (route %s) in %.3gs: %s", state.retries,
                 envelope.properties.message_id, state.route, delay, state.last_error)
        return True

    async def _dead_letter(self, dead: DeadLetter, envelope: Envelope, config: Config,
                           trace: Mapping[str, str], attempts: int) -> Verdict:
        properties = dead_letter_properties(envelope, dead, attempts=attempts, now=self.clock(),
                                            trace=trace)
        type_label = self._type_label(dead.message_type, config)
        deadline = time.monotonic() + self.hold_limit
        while not await self._publish_dead_letter(dead, envelope, config, properties):
            if not await self._hold(deadline, envelope):
                self.metrics.message("requeued", type_label)
                return Verdict.REQUEUE
        log.info("dead-lettered %s type=%s reason=%s: %s", envelope.properties.message_id,
                 dead.message_type, dead.reason.value, dead.error)
        self.metrics.dead_letter(dead.reason.value)
        if dead.route is None:
            self.metrics.message("dead_lettered", type_label)
        return Verdict.ACK

    async def _publish_dead_letter(self, dead: DeadLetter, envelope: Envelope, config: Config,
                                   properties: Properties) -> bool:
        result = await self.publisher.publish(
            config.topology.dead_letter.exchange, dead_letter_routing_key(dead), envelope.body,
            properties, DEFAULT_RETRY)
        if isinstance(result, Failed):
            level = logging.ERROR if isinstance(result.error, Unroutable) else logging.WARNING
            log.log(level, "dead letter for %s (%s) not confirmed: %s",
                    envelope.properties.message_id, dead.reason.value, result.error)
            return False
        return True

    async def _hold(self, deadline: float, envelope: Envelope) -> bool:
        """Wait for the broker to accept publishes; False once the hold limit is reached."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.error("gave up holding %s after %.0fs; it goes back to the queue",
                      envelope.properties.message_id, self.hold_limit)
            return False
        await self.publisher.wait_usable(remaining)
        await self.publisher.sleep(min(HOLD_PAUSE, max(remaining, 0)))
        return True
