"""One job of a delivery on the broker: the facts it reads and the actions it performs.

A ``Run`` is created per job by ``router.broker.settle`` and does what the
step (``router.core.delivery``) asks, nothing else: it publishes, asks or
tells the breaker, parks, dead-letters and holds, and reports the broker's
answer as an ``Event``.  It also writes what the SPEC promises about each
action: producer spans, ``mcp_router_*`` counts, log lines and journal notes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, assert_never

from opentelemetry.trace import Span, use_span

from router.broker.publish import Delivered, Failed
from router.broker.settlenotes import Delivery, Notes
from router.config.policies import DEFAULT_RETRY
from router.core.breakers import Breaker
from router.core.deliveryevents import (
    Admitted,
    Confirmed,
    ConnectionLost,
    DeadLettered,
    DeadLetterRefused,
    DeadLetterUnencodable,
    Event,
    HoldOver,
    Nacked,
    Parked,
    ParkRefused,
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
    NoConsumer,
    Park,
    ParkWhy,
    Progress,
    Publish,
    SendDeadLetter,
    Tell,
    Verdict,
    WholeDeadLetter,
)
from router.core.envelope import Properties
from router.core.eventform import present
from router.core.ladder import RetryState, retry_queue_name
from router.core.outbound import (
    copy_properties,
    dead_letter_properties,
    dead_letter_routing_key,
    retry_properties,
)
from router.core.outcome import DeadLetter
from router.errors import DeliveryFailed, Refused, Unroutable, Unsendable
from router.observe.metrics import UNKNOWN
from router.observe.spans import record_failure
from router.observe.tracing import inject

if TYPE_CHECKING:  # settle creates runs; a run reads its settler's parts
    from router.broker.settle import Settler

__all__ = ["HOLD_PAUSE", "Run"]

log = logging.getLogger("router.settle")

HOLD_PAUSE = 1.0  # between two rounds of a held delivery
_WAITS = (ParkWhy.CONSUMER_WAIT, ParkWhy.CIRCUIT_WAIT)


class Run:
    """The broker side of one job: its breaker, its producer spans, its actions."""

    def __init__(self, settler: Settler, job: Job, delivery: Delivery) -> None:
        self.s, self.job = settler, job
        self.envelope, self.config, self.parent = \
            delivery.envelope, delivery.config, delivery.parent
        self.overrides = delivery.overrides
        self.breaker: Breaker | None = None
        self.no_consumer: NoConsumer | None = None
        self.notes = Notes(settler.tracer, settler.journal, delivery.envelope, delivery.parent,
                           delivery.config)
        self._properties: Properties | None = None
        if isinstance(job, CopyJob):
            copy, now = job.copy, settler.monotonic()
            board = settler.breakers.of(self.config.policies.circuit_breakers,
                                        self.config.topology, now)
            self.breaker = board.of(copy.exchange, copy.routing_key, now) if board.rules \
                else None
            rule = settler.holds(copy.route, job.message_type, self.config)
            if rule is not None:
                self.no_consumer = NoConsumer(rule.action == "dead_letter", rule.wait,
                                              rule.where)

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
                return await self._park(action)
            case SendDeadLetter():
                return await self._dead_letter(action)
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
                      self.s.hold_limit, extra=self.notes.about())
            dead = progress.dead or _dead_of(self.job)
            if dead is not None:
                if self.notes.dead is not None:
                    record_failure(self.notes.dead, "hold_limit", "dead letter never confirmed")
                self.s.metrics.message("requeued", self.notes.type_label(dead.message_type))
        return action.verdict

    def end(self) -> None:
        """End the spans this run opened."""
        self.notes.end()

    async def _publish(self, progress: Progress) -> Event:
        job = self.job
        assert isinstance(job, CopyJob)  # noqa: S101 - the step publishes copies only
        copy, span = job.copy, self._copy_span()
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
        self.notes.note("copy", route=copy.route, exchange=copy.exchange,
                   routing_key=copy.routing_key, attempts=attempts, confirmed=confirmed,
                   error=None if isinstance(result, Delivered) else str(result.error))
        if isinstance(result, Delivered):
            return Confirmed(result.attempts)
        return _failure_event(result)

    def _copy_span(self) -> Span:
        job = self.job
        assert isinstance(job, CopyJob)  # noqa: S101 - only copies have a copy span
        return self.notes.copy_span(job.copy)

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

    async def _park(self, park: Park) -> Event:
        state = park.state
        if park.failure is not None:
            record_failure(self._copy_span(), type(park.failure.error).__name__,
                           str(park.failure.error))
        if park.why in _WAITS:
            self._copy_span().add_event("held", {"mcp.router.held_because": state.last_error})
        if isinstance(state, RetryState) and state.origin is None:
            state = replace(state, origin=inject(self.parent).get("traceparent"))
        route = state.route if isinstance(state, RetryState) else ""
        if not await self._publish_park(state, park.delay, route):
            return ParkRefused()
        match park.why:
            case ParkWhy.RETRY:
                self.notes.note("retry", route=route, round=state.retries, delay_seconds=park.delay,
                           error=state.last_error)
            case ParkWhy.CONSUMER_WAIT | ParkWhy.CIRCUIT_WAIT:
                self.notes.note("held", route=route, delay_seconds=park.delay, why=state.last_error)
            case ParkWhy.SHAPED:
                message_type = getattr(self.job, "message_type", UNKNOWN)
                self.s.metrics.message("shaped", message_type)
                self.notes.note("parked", delay_seconds=park.delay, why=state.last_error)
            case _:
                assert_never(park.why)
        return Parked()

    async def _publish_park(self, state: Any, delay: float, route: str) -> bool:
        """Publish to the retry queue of ``delay``; True once confirmed."""
        queue = retry_queue_name(self.config.topology.ingress.queue, delay)
        span = self.notes.producer("", queue, route=route or None,
                              **{"mcp.router.retry.round": state.retries,
                                 "mcp.router.retry.delay_ms": round(delay * 1000)})
        properties = retry_properties(self.envelope, state, inject(span), self.s.router_user)
        with use_span(span, end_on_exit=True):
            result = await self.s.publisher.publish("", queue, self.envelope.body, properties,
                                                    DEFAULT_RETRY)
            if isinstance(result, Failed):
                record_failure(span, type(result.error).__name__, str(result.error))
        about = self.notes.about(route=route or None)
        if isinstance(result, Failed):
            log.warning("could not park the copy for retry in %s: %s", queue, result.error,
                        extra=about)
            return False
        log.info("retry %d in %.3gs: %s", state.retries, delay, state.last_error, extra=about)
        return True

    async def _dead_letter(self, send: SendDeadLetter) -> Event:
        dead, exchange = send.dead, self.config.topology.dead_letter.exchange
        if send.gave_up and isinstance(self.job, CopyJob):
            self.s.metrics.copy(self.job.copy.route, "dead_lettered")
        if send.failure is not None:
            record_failure(self._copy_span(), type(send.failure.error).__name__,
                           str(send.failure.error))
        span = self.notes.dead_letter_span(exchange, dead, send.attempts)
        properties = dead_letter_properties(self.envelope, dead, attempts=send.attempts,
                                            now=self.s.clock(), trace=inject(span))
        body = self.envelope.body if self.envelope.dead_body is None else \
            self.envelope.dead_body  # sealed
        result = await self.s.publisher.publish(exchange, dead_letter_routing_key(dead), body,
                                                properties, DEFAULT_RETRY)
        if isinstance(result, Failed):
            return self._dead_letter_failed(dead, result.error, span)
        log.info("dead-lettered (%s): %s", dead.reason.value, dead.error,
                 extra=self.notes.about(dead.message_type, route=dead.route,
                                   reason=dead.reason.value))
        self.s.metrics.dead_letter(dead.reason.value)
        self.notes.note("dead_lettered", reason=dead.reason.value, error=dead.error,
                   route=dead.route, attempts=send.attempts, exchange=exchange)
        if isinstance(self.job, WholeDeadLetter):
            self.s.metrics.message("dead_lettered", self.notes.type_label(dead.message_type))
        return DeadLettered()

    def _dead_letter_failed(self, dead: DeadLetter, error: DeliveryFailed, span: Span) -> Event:
        level = logging.ERROR if isinstance(error, Unroutable) else logging.WARNING
        log.log(level, "dead letter (%s) not confirmed: %s", dead.reason.value, error,
                extra=self.notes.about(dead.message_type))
        if not isinstance(error, Unsendable):
            return DeadLetterRefused()
        record_failure(span, "unsendable", str(error))
        log.error("the dead letter (%s) cannot be encoded either (%s): rejected without "
                  "requeue, for the ingress queue's own dead-lettering", dead.reason.value,
                  error, extra=self.notes.about())
        self.s.metrics.malformed_delivery("rejected")
        return DeadLetterUnencodable()


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


def _dead_of(job: Job) -> DeadLetter | None:
    """The dead letter a job is about, if it is one."""
    return job.dead if isinstance(job, WholeDeadLetter | CopyDeadLetter) else None
