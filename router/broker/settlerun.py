"""One job of a delivery on the broker: the step loop, its facts and its actions.

A ``Run`` is created per job by ``router.broker.settle``.  ``Run.settle`` loops:
gather the facts (the injected monotonic clock, the destination's breaker, the
route's ``unconsumed`` rule), call the step (``router.core.delivery``), perform
its action (publish, ask or tell the breaker, hold; parks and dead letters in
``router.broker.setaside``) and hand the broker's answer back as the next
event, until the step says ``Done``.  It decides nothing.  It also writes what
the SPEC promises about each action: producer spans, ``mcp_router_*`` counts,
log lines and journal notes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import assert_never

from router.broker.publish import Delivered, Failed
from router.broker.setaside import dead_letter, park
from router.broker.settleparts import Delivery, RunState
from router.core.delivery import start, step
from router.core.deliveryevents import (
    Admitted,
    Confirmed,
    ConnectionLost,
    Event,
    HoldOver,
    Nacked,
    Returned,
    Told,
    Unencodable,
)
from router.core.deliverysteps import (
    Action,
    AskBreaker,
    BreakerFacts,
    BreakerNews,
    CopyDeadLetter,
    CopyJob,
    Done,
    Facts,
    Hold,
    Job,
    MessageResult,
    Park,
    Progress,
    Publish,
    SendDeadLetter,
    Tell,
    Verdict,
    WholeDeadLetter,
)
from router.core.eventform import present
from router.core.journalnotes import Note
from router.core.outbound import copy_properties
from router.core.outcome import Dead
from router.errors import Refused, Unroutable, Unsendable
from router.observe.conventions import record_failure
from router.observe.tracing import inject

__all__ = ["HOLD_PAUSE", "Delivery", "Run"]

log = logging.getLogger("router.settle")

HOLD_PAUSE = 1.0  # between two rounds of a held delivery


class Run(RunState):
    """The broker side of one job: the step loop and its actions."""

    async def settle(self) -> Verdict:
        """The step loop of the job: gather facts, step, perform, until done."""
        monotonic = self.s.monotonic
        taken = start(self.job, self.s.hold_limit, self.facts(monotonic()))
        try:
            while not isinstance(taken.action, Done):
                event = await self.perform(taken.action, taken.progress, monotonic)
                taken = step(taken.progress, event, self.facts(monotonic()))
            return self.done(taken.action, taken.progress)
        finally:
            for span in (self.copy, self.dead):
                if span is not None:
                    span.end()

    def facts(self, now: float) -> Facts:
        """The snapshot the next step reads."""
        b = self.breaker
        breaker = None if b is None else BreakerFacts(
            b.state, b.rule.wait, f"circuit open for {b.destination}: {b.reason}")
        return Facts(now, breaker, self.no_consumer)

    async def perform(self, action: Action, progress: Progress,
                      monotonic: Callable[[], float]) -> Event:
        """Do ``action`` on the broker; the broker's answer is the next event."""
        match action:
            case Publish():
                return await self._publish(progress)
            case AskBreaker():
                assert self.breaker is not None  # noqa: S101 - the step asks only if it has one
                return Admitted(self.breaker.admit(monotonic()))
            case Tell():
                self._tell(action, monotonic())
                return Told()
            case Park():
                return await park(self, action)
            case SendDeadLetter():
                return await dead_letter(self, action)
            case Hold(until=until):
                remaining = max(until - monotonic(), 0.0)
                await self.s.publisher.wait_usable(remaining)
                await self.s.publisher.sleep(min(HOLD_PAUSE, remaining))
                return HoldOver()
            case Done():
                raise AssertionError("Done is settled by Run.done")
            case _:
                assert_never(action)

    def done(self, action: Done, progress: Progress) -> Verdict:
        """Count what the job became; say so when the hold limit gave the delivery back."""
        if action.result is not None and isinstance(self.job, CopyJob):
            self.s.metrics.copy(self.job.copy.route, action.result)
        if action.hold_expired:
            log.error("gave up holding the delivery after %.0fs; it goes back to the queue",
                      self.s.hold_limit, extra=self.about())
            dead = progress.dead or _dead_of(self.job)
            if dead is not None:
                if self.dead is not None:
                    record_failure(self.dead, "hold_limit", "dead letter never confirmed")
                self.s.metrics.message(MessageResult.REQUEUED, self.type_label(dead.message_type))
        return action.verdict

    async def _publish(self, progress: Progress) -> Event:
        job = self.job
        assert isinstance(job, CopyJob)  # noqa: S101 - the step publishes copies only
        copy, span = job.copy, self.copy_span()
        if self._properties is None:
            self._properties = copy_properties(self.envelope, copy, inject(span), self.overrides)
        body = self.envelope.body if copy.body is None else copy.body  # upcast, sealed
        sent = (body, self._properties) if copy.form is None else \
            present(copy.form, body, self._properties, self.s.clock())  # as a CloudEvent
        result = await self.s.publisher.publish(copy.exchange, copy.routing_key, *sent,
                                                job.policy)
        attempts = progress.attempts + result.attempts
        span.set_attribute("mcp.router.attempts", attempts)
        if result.attempts > 1:
            self.s.metrics.publish_retries.inc(result.attempts - 1)
        confirmed = isinstance(result, Delivered)
        self.note(Note.COPY, route=copy.route, exchange=copy.exchange,
                   routing_key=copy.routing_key, attempts=attempts, confirmed=confirmed,
                   error=None if isinstance(result, Delivered) else str(result.error))
        if isinstance(result, Delivered):
            return Confirmed(result.attempts)
        return _failure_event(result)

    def _tell(self, tell: Tell, now: float) -> None:
        breaker = self.breaker
        assert breaker is not None  # noqa: S101 - only an admitted copy is told about
        match tell.news:
            case BreakerNews.SUCCEEDED:
                breaker.succeeded(tell.admission, now)
            case BreakerNews.FAILED:
                breaker.failed(tell.admission, now, tell.error or "")
            case BreakerNews.RELEASED:
                breaker.released(tell.admission)
            case _:
                assert_never(tell.news)

def _failure_event(result: Failed) -> Event:
    """The broker's refusal of a copy, as the step's event."""
    error = result.error
    if isinstance(error, Unroutable):
        return Returned(result.attempts, error)
    if isinstance(error, Unsendable):
        return Unencodable(result.attempts, error)
    if isinstance(error, Refused):
        return Nacked(result.attempts, error)
    return ConnectionLost(result.attempts, error)


def _dead_of(job: Job) -> Dead | None:
    """The dead letter a job is about, if it is one."""
    return job.dead if isinstance(job, WholeDeadLetter | CopyDeadLetter) else None
