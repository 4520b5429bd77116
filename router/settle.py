"""Settlement: carry out an ``Outcome`` on the broker and say how to settle the delivery.

This is the only place that matches on ``Outcome``; ``assert_never`` makes the
type checker prove every case is handled.  The ingress delivery is acked only
after every copy (or its dead letter) is confirmed; a transient failure that
outlives the in-process retries leaves it for redelivery instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import assert_never

from router.config import Config
from router.envelope import Envelope
from router.errors import Unroutable
from router.metrics import UNKNOWN, Metrics
from router.outbound import copy_properties, dead_letter_properties, dead_letter_routing_key
from router.outcome import DeadLetter, Forward, Outcome, Reason
from router.policies import DEFAULT_RETRY
from router.publish import Delivered, Failed, Publisher

__all__ = ["Settler", "Verdict"]

log = logging.getLogger("router.settle")


class Verdict(Enum):
    ACK = "ack"  # every copy or dead letter is confirmed
    REQUEUE = "requeue"  # something transient failed: deliver it again later


def delivery_attempt(envelope: Envelope) -> int:
    """1 for a first delivery; quorum queues count redeliveries in ``x-delivery-count``."""
    count = envelope.properties.headers.get("x-delivery-count")
    return count + 1 if isinstance(count, int) and not isinstance(count, bool) else 1


@dataclass
class Settler:
    """Publishes what an outcome asks for, with metrics; returns the verdict."""

    publisher: Publisher
    metrics: Metrics
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

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
        return message_type if message_type is not None and message_type in config.registry \
            else UNKNOWN

    async def _forward(self, outcome: Forward, envelope: Envelope, config: Config,
                       trace: Mapping[str, str]) -> Verdict:
        message_type = outcome.message.message_type
        policy = config.policies.retry_for(message_type)
        publishes = [
            self.publisher.publish(copy.exchange, copy.routing_key, envelope.body,
                                   copy_properties(envelope, copy, trace), policy)
            for copy in outcome.copies
        ]
        results = [await publishes[0]] if len(publishes) == 1 else \
            await asyncio.gather(*publishes)
        verdict = Verdict.ACK
        for copy, result in zip(outcome.copies, results, strict=True):
            if result.attempts > 1:
                self.metrics.publish_retries.inc(result.attempts - 1)
            match result:
                case Delivered():
                    self.metrics.copy(copy.route, "delivered")
                case Failed(attempts=attempts, error=Unroutable() as error):
                    self.metrics.copy(copy.route, "unroutable")
                    dead = DeadLetter(Reason.UNROUTABLE, f"route {copy.route!r}: {error}",
                                      message_type, copy.route)
                    if await self._dead_letter(dead, envelope, config, trace,
                                               attempts) is Verdict.REQUEUE:
                        verdict = Verdict.REQUEUE
                case Failed(error=error):
                    self.metrics.copy(copy.route, "failed")
                    log.warning("copy for route %s of %s not confirmed, will be redelivered: %s",
                                copy.route, envelope.properties.message_id, error)
                    verdict = Verdict.REQUEUE
                case _:
                    assert_never(result)
        outcome_label = "routed" if verdict is Verdict.ACK else "requeued"
        self.metrics.message(outcome_label, message_type)
        return verdict

    async def _dead_letter(self, dead: DeadLetter, envelope: Envelope, config: Config,
                           trace: Mapping[str, str], attempts: int) -> Verdict:
        properties = dead_letter_properties(envelope, dead, attempts=attempts, now=self.clock(),
                                            trace=trace)
        result = await self.publisher.publish(
            config.topology.dead_letter.exchange, dead_letter_routing_key(dead), envelope.body,
            properties, DEFAULT_RETRY)
        type_label = self._type_label(dead.message_type, config)
        if isinstance(result, Failed):
            log.error("dead letter for %s (%s) not confirmed, will be redelivered: %s",
                      envelope.properties.message_id, dead.reason.value, result.error)
            self.metrics.message("requeued", type_label)
            return Verdict.REQUEUE
        log.info("dead-lettered %s type=%s reason=%s: %s", envelope.properties.message_id,
                 dead.message_type, dead.reason.value, dead.error)
        self.metrics.dead_letter(dead.reason.value)
        if dead.route is None:
            self.metrics.message("dead_lettered", type_label)
        return Verdict.ACK
