"""Settlement: the interpreter of the delivery step (``router.core.delivery``).

``Settler.settle`` turns an ``Outcome`` into jobs (one per copy and per copy
that cannot be had, or the whole message's park or dead letter), runs them
concurrently and combines their verdicts.  Each job is a
``router.broker.settlerun.Run``: for every action it gathers the facts (the
injected monotonic clock, the destination's breaker, the route's live
consumers), performs the action on the broker and hands the broker's answer
back as the next event.  Nothing here decides: what to publish, park,
dead-letter or hold, and when to give up holding, is the step's.

The ingress delivery is acked only once every copy is confirmed at its
destination, parked in a retry queue, or dead-lettered, each confirmed by the
broker.  When the broker accepts nothing (a memory alarm, a lost connection),
the delivery is *held* until publishing works again, at most ``HOLD_LIMIT``
seconds, then requeued: a full prefetch window of held deliveries is what
pauses intake during an alarm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import assert_never

from opentelemetry.trace import Span

from router.broker.settleparts import HOLD_LIMIT, Delivery, SettleParts
from router.broker.settlerun import HOLD_PAUSE, Run
from router.config.configuration import Config
from router.core.delivery import combined, delivery_attempt
from router.core.deliverysteps import (
    CameFrom,
    CopyDeadLetter,
    CopyJob,
    CopyResult,
    Job,
    MessageResult,
    ShapeJob,
    Verdict,
    WholeDeadLetter,
)
from router.core.envelope import Envelope
from router.core.outcome import DeadCopy, DeadLetter, Delay, Forward, Outcome

__all__ = ["HOLD_LIMIT", "HOLD_PAUSE", "Settler", "Verdict", "delivery_attempt"]



@dataclass
class Settler(SettleParts):
    """Carries out an outcome on the broker, step by step; returns the verdict."""

    async def settle(self, outcome: Outcome, envelope: Envelope, config: Config,
                     parent: Span) -> Verdict:
        """Carry out ``outcome``; ``parent`` is the delivery's process span."""
        came_from = CameFrom(envelope.exchange, envelope.routing_key,
                             envelope.properties.user_id)
        match outcome:
            case Forward():
                delivery = Delivery(envelope, config, parent, outcome.overrides)
                jobs = self._copies(outcome, delivery, came_from)
                verdict = await self._run_all(jobs, delivery)
                self.metrics.message(MessageResult.ROUTED if verdict is Verdict.ACK
                                     else MessageResult.REQUEUED,
                                     outcome.message.message_type)
                return verdict
            case DeadLetter():
                whole = WholeDeadLetter(outcome, delivery_attempt(envelope))
                return await self._run(whole, Delivery(envelope, config, parent))
            case DeadCopy():
                one = CopyDeadLetter(outcome, delivery_attempt(envelope))
                return await self._run(one, Delivery(envelope, config, parent))
            case Delay():
                shape = ShapeJob(outcome.delay, outcome.reason, outcome.message_type, came_from)
                return await self._run(shape, Delivery(envelope, config, parent))
            case _:
                assert_never(outcome)

    def _copies(self, outcome: Forward, delivery: Delivery, came_from: CameFrom) -> list[Job]:
        """One job per real copy and per copy that cannot be had; shadows go on the side."""
        envelope, config = delivery.envelope, delivery.config
        copies = outcome.copies
        if outcome.dropped or any(c.shadow for c in copies):  # never treated as real copies
            if self.shadows is not None:  # on the side: never awaited here
                self.shadows.send([c for c in copies if c.shadow], outcome.dropped, envelope,
                                  outcome.overrides, delivery.parent)
            copies = tuple(c for c in copies if not c.shadow)
        attempt = delivery_attempt(envelope)
        message_type = outcome.message.message_type
        jobs: list[Job] = []
        for unfit in outcome.unfit:  # their version cannot be had: each its own dead letter
            self.metrics.copy(unfit.route or "", CopyResult.DEAD_LETTERED)
            jobs.append(CopyDeadLetter(unfit, attempt))
        if copies:
            policy = config.policies.retry_for(message_type)
            jobs.extend(CopyJob(copy, message_type, policy, came_from, attempt, outcome.retry)
                        for copy in copies)
        return jobs

    async def _run_all(self, jobs: Sequence[Job], delivery: Delivery) -> Verdict:
        """Every job of the delivery, concurrently (one without a task of its own)."""
        if len(jobs) == 1:
            return await self._run(jobs[0], delivery)
        return combined(await asyncio.gather(*(self._run(job, delivery) for job in jobs)))

    async def _run(self, job: Job, delivery: Delivery) -> Verdict:
        """One job, step by step (``Run.settle``)."""
        return await Run(self, job, delivery).settle()
