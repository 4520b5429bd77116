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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, assert_never

from opentelemetry.trace import Span, SpanKind, Tracer, set_span_in_context, use_span

from router.broker.publish import Delivered, Failed, Publisher
from router.broker.shadows import ShadowSender
from router.config.configuration import Config
from router.config.policies import DEFAULT_RETRY, RetryPolicy
from router.core.breakers import Admission, Breaker, BreakerBoard, State
from router.core.envelope import Envelope, Properties
from router.core.eventform import present
from router.core.ladder import GiveUp, RetryLater, RetryState, next_step, retry_queue_name
from router.core.outbound import (
    MAX_COUNT,
    copy_properties,
    dead_letter_properties,
    dead_letter_routing_key,
    retry_properties,
)
from router.core.outcome import Copy, DeadLetter, Delay, Forward, Outcome, Reason
from router.discovery.registry import UnconsumedRule
from router.errors import Refused, Unroutable, Unsendable
from router.observe.conventions import publish_attributes, publish_name, record_failure
from router.observe.logs import context
from router.observe.metrics import UNKNOWN, Metrics
from router.observe.tracing import PropagatingTracer, inject, span_trace_id
from router.runtime.journal import Journal

__all__ = ["HOLD_LIMIT", "Settler", "Verdict"]

log = logging.getLogger("router.settle")

HOLD_LIMIT = 300.0  # seconds a delivery may wait for the broker to accept publishes
HOLD_PAUSE = 1.0  # between two rounds of a held delivery


class Verdict(Enum):
    ACK = "ack"  # every copy, retry or dead letter is confirmed
    REQUEUE = "requeue"  # give the delivery back (counts toward the delivery limit)
    REJECT = "reject"  # not even its dead letter encodes: the queue's own dead-lettering


def delivery_attempt(envelope: Envelope) -> int:
    """1 for a first delivery; quorum queues count redeliveries in ``x-delivery-count``.

    Only a redelivery's count is the broker's: RabbitMQ passes a publisher's
    ``x-delivery-count`` through on a first delivery (STYLE.md), so nothing a
    publisher sets is a counter here.
    """
    if not envelope.redelivered:
        return 1
    count = envelope.properties.headers.get("x-delivery-count")
    if isinstance(count, int) and not isinstance(count, bool) and 0 < count < MAX_COUNT:
        return count + 1
    return 2  # redelivered, by a broker that does not count: at least the second attempt


@dataclass
class Settler:
    """Publishes what an outcome asks for, with metrics; returns the verdict."""

    publisher: Publisher
    metrics: Metrics
    router_user: str = "guest"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    hold_limit: float = HOLD_LIMIT
    tracer: Tracer = field(default_factory=PropagatingTracer)
    breakers: BreakerBoard = field(default_factory=BreakerBoard)
    monotonic: Callable[[], float] = time.monotonic
    # The ``unconsumed`` policy rule for a copy of a route no live service consumes.
    holds: Callable[[str, str, Config], UnconsumedRule | None] = lambda _r, _t, _c: None
    journal: Journal = field(default_factory=lambda: Journal(0))  # what follow shows
    shadows: ShadowSender | None = None  # None: shadow copies are not sent

    def _note(self, envelope: Envelope, event: str, **detail: Any) -> None:
        if self.journal.size:
            self.journal.record(envelope.properties.message_id, event, **detail)

    async def settle(self, outcome: Outcome, envelope: Envelope, config: Config,
                     parent: Span) -> Verdict:
        """Carry out ``outcome``; ``parent`` is the delivery's process span."""
        match outcome:
            case Forward():
                return await self._forward(outcome, envelope, config, parent)
            case DeadLetter():
                attempts = delivery_attempt(envelope)
                return await self._dead_letter(outcome, envelope, config, parent, attempts)
            case Delay():
                return await self._delay(outcome, envelope, config, parent)
            case _:
                assert_never(outcome)

    async def _delay(self, outcome: Delay, envelope: Envelope, config: Config,
                     parent: Span) -> Verdict:
        """Park the whole message; held (not requeued) while the broker refuses it."""
        state = RetryState("", "", "", 0, 0, outcome.reason, envelope.exchange,
                           envelope.routing_key, envelope.properties.user_id)
        deadline = time.monotonic() + self.hold_limit
        while not await self._park(state, outcome.delay, envelope, config, parent=parent,
                                   policy=DEFAULT_RETRY):
            if not await self._hold(deadline, envelope):
                return Verdict.REQUEUE
        self.metrics.message("shaped", outcome.message_type)
        self._note(envelope, "parked", delay_seconds=outcome.delay, why=outcome.reason)
        return Verdict.ACK

    def _producer(self, parent: Span, exchange: str, routing_key: str, envelope: Envelope,
                  **attributes: Any) -> Span:
        """A PRODUCER span under the process span, for one publish."""
        if isinstance(self.tracer, PropagatingTracer):  # context only: skip the attributes
            return self.tracer.start_span("", set_span_in_context(parent))
        span_attributes = publish_attributes(
            exchange, routing_key, message_id=envelope.properties.message_id,
            body_size=len(envelope.body), route=attributes.pop("route", None))
        span_attributes.update(attributes)
        return self.tracer.start_span(publish_name(exchange), set_span_in_context(parent),
                                      SpanKind.PRODUCER, span_attributes)

    def _type_label(self, message_type: str | None, config: Config) -> str:
        known = message_type is not None and message_type in config.registry
        return message_type if known and message_type is not None else UNKNOWN

    async def _forward(self, outcome: Forward, envelope: Envelope, config: Config,
                       parent: Span) -> Verdict:
        message_type = outcome.message.message_type
        policy = config.policies.retry_for(message_type)
        copies = outcome.copies
        if outcome.dropped or any(c.shadow for c in copies):  # never treated as real copies
            if self.shadows is not None:  # on the side: never awaited here
                self.shadows.send([c for c in copies if c.shadow], outcome.dropped, envelope,
                                  outcome.overrides, parent)
            copies = tuple(c for c in copies if not c.shadow)
        deliveries = []
        for copy in copies:
            hold = self.holds(copy.route, message_type, config)
            if hold is not None and hold.action == "dead_letter":
                self.metrics.copy(copy.route, "dead_lettered")
                dead = DeadLetter(Reason.NO_CONSUMER, f"route {copy.route!r}: no live service "
                                  f"consumes it ({hold.where})", message_type, copy.route, copy)
                deliveries.append(self._dead_letter(dead, envelope, config, parent,
                                                    delivery_attempt(envelope)))
                continue
            deliveries.append(self._copy(copy, envelope, config, parent, policy=policy,
                                         prior=outcome.retry, message_type=message_type,
                                         overrides=outcome.overrides, hold=hold))
        verdicts = [await deliveries[0]] if len(deliveries) == 1 else \
            await asyncio.gather(*deliveries)
        verdict = next((v for v in (Verdict.REQUEUE, Verdict.REJECT) if v in verdicts),
                       Verdict.ACK)
        self.metrics.message("routed" if verdict is Verdict.ACK else "requeued", message_type)
        return verdict

    async def _copy(self, copy: Copy, envelope: Envelope, config: Config, parent: Span, *,
                    policy: RetryPolicy, prior: RetryState | None, message_type: str,
                    overrides: Mapping[str, Any], hold: UnconsumedRule | None) -> Verdict:
        """Deliver one copy, or park it for a broker-tier retry, or dead-letter it.

        ``hold`` (no live consumer) and an open circuit make it wait in the retry tier
        without spending a round."""
        attempts = prior.attempts if prior else 0
        retries = prior.retries if prior else 0
        breakers = self.breakers.of(config.policies.circuit_breakers, config.topology,
                                    self.monotonic())
        breaker = breakers.of(copy.exchange, copy.routing_key, self.monotonic()) \
            if breakers.rules else None
        span = self._producer(parent, copy.exchange, copy.routing_key, envelope,
                              route=copy.route,
                              **({"mcp.router.branch": copy.branch} if copy.branch else {}))
        properties = copy_properties(envelope, copy, inject(span), overrides)
        deadline = time.monotonic() + self.hold_limit

        def state(rounds: int, error: str) -> RetryState:
            origin = prior.origin if prior and prior.origin else \
                inject(parent).get("traceparent")
            return RetryState(copy.route, copy.exchange, copy.routing_key, attempts, rounds,
                              error, envelope.exchange, envelope.routing_key,
                              envelope.properties.user_id, origin, copy.branch)

        try:
            while True:
                admission, wait, why = self._admit(breaker, hold, copy)
                if admission is Admission.WAIT:
                    span.add_event("held", {"mcp.router.held_because": why})
                    verdict = await self._wait_open(state(retries, why), wait, envelope, config,
                                                    parent=parent, policy=policy,
                                                    deadline=deadline,
                                                    result="consumer_wait" if hold is not None
                                                    else "circuit_wait")
                    if verdict is not None:
                        return verdict
                    continue
                body = envelope.body if copy.body is None else copy.body  # upcast, sealed
                sent = (body, properties) if copy.form is None else \
                    present(copy.form, body, properties, self.clock())  # as a CloudEvent
                result = await self.publisher.publish(copy.exchange, copy.routing_key,
                                                      *sent, policy)
                attempts += result.attempts
                span.set_attribute("mcp.router.attempts", attempts)
                if result.attempts > 1:
                    self.metrics.publish_retries.inc(result.attempts - 1)
                self._tell(breaker, admission, result)
                self._note(envelope, "copy", route=copy.route, exchange=copy.exchange,
                           routing_key=copy.routing_key, attempts=attempts,
                           confirmed=isinstance(result, Delivered),
                           error=None if isinstance(result, Delivered) else str(result.error))
                if isinstance(result, Delivered):
                    return self._counted(copy.route, "delivered")
                if breaker is not None and breaker.state is State.OPEN:
                    continue  # this failure opened it (or was the probe): wait, round kept
                record_failure(span, type(result.error).__name__, str(result.error))
                step = next_step(policy, retries, result.error)
                match step:
                    case RetryLater(delay=delay):
                        if await self._park(state(retries + 1, str(result.error)), delay,
                                            envelope, config, parent=parent, policy=policy):
                            self._note(envelope, "retry", route=copy.route, round=retries + 1,
                                       delay_seconds=delay, error=str(result.error))
                            return self._counted(copy.route, "retry_scheduled")
                    case GiveUp(reason=reason):
                        self.metrics.copy(copy.route, "dead_lettered")
                        dead = DeadLetter(reason, f"route {copy.route!r}: {result.error}",
                                          message_type, copy.route, copy)
                        return await self._dead_letter(dead, envelope, config, parent,
                                                       attempts)
                    case _:
                        assert_never(step)
                if not await self._hold(deadline, envelope):
                    return Verdict.REQUEUE
        finally:
            span.end()

    def _admit(self, breaker: Breaker | None, hold: UnconsumedRule | None,
               copy: Copy) -> tuple[Admission, float, str]:
        """Whether the copy may be published now; if not, how long it waits and why."""
        if hold is not None:
            return Admission.WAIT, hold.wait, f"no live consumer for route {copy.route!r} " \
                                              f"({hold.where})"
        if breaker is None:
            return Admission.ALLOW, 0.0, ""
        admission = breaker.admit(self.monotonic())
        return admission, breaker.rule.wait, f"circuit open for {breaker.destination}: " \
                                             f"{breaker.reason}"

    async def _wait_open(self, state: RetryState, wait: float, envelope: Envelope,
                         config: Config, *, parent: Span, policy: RetryPolicy,
                         deadline: float, result: str) -> Verdict | None:
        """Park a copy that may not go now, counted as ``result``; None means: the broker
        refused, try again."""
        if await self._park(state, wait, envelope, config, parent=parent, policy=policy):
            self._note(envelope, "held", route=state.route, delay_seconds=wait,
                       why=state.last_error)
            return self._counted(state.route, result)
        return None if await self._hold(deadline, envelope) else Verdict.REQUEUE

    def _counted(self, route: str, result: str) -> Verdict:
        """Count the copy's result; it is settled: ack."""
        self.metrics.copy(route, result)
        return Verdict.ACK

    def _tell(self, breaker: Breaker | None, admission: Admission,
              result: Delivered | Failed) -> None:
        """Report a publish to the destination's breaker.  A failure counts only when it
        is the destination's (returned, or nacked); a lost connection says nothing."""
        if breaker is None:
            return
        if isinstance(result, Delivered):
            breaker.succeeded(admission, self.monotonic())
        elif isinstance(result.error, Unroutable | Refused):
            breaker.failed(admission, self.monotonic(), str(result.error))
        else:
            breaker.released(admission)

    async def _park(self, state: RetryState, delay: float, envelope: Envelope, config: Config,
                    *, parent: Span, policy: RetryPolicy) -> bool:
        """Publish the copy to the retry queue for ``delay``; True once confirmed."""
        queue = retry_queue_name(config.topology.ingress.queue, delay)
        span = self._producer(parent, "", queue, envelope, route=state.route,
                              **{"mcp.router.retry.round": state.retries,
                                 "mcp.router.retry.delay_ms": round(delay * 1000)})
        properties = retry_properties(envelope, state, inject(span), self.router_user)
        with use_span(span, end_on_exit=True):
            result = await self.publisher.publish("", queue, envelope.body, properties, policy)
            if isinstance(result, Failed):
                record_failure(span, type(result.error).__name__, str(result.error))
        about = _about(envelope, parent, route=state.route)
        if isinstance(result, Failed):
            log.warning("could not park the copy for retry in %s: %s", queue, result.error,
                        extra=about)
            return False
        log.info("retry %d in %.3gs: %s", state.retries, delay, state.last_error, extra=about)
        return True

    async def _dead_letter(self, dead: DeadLetter, envelope: Envelope, config: Config,
                           parent: Span, attempts: int) -> Verdict:
        exchange = config.topology.dead_letter.exchange
        span = self._producer(parent, exchange, dead_letter_routing_key(dead), envelope,
                              route=dead.route,
                              **{"mcp.router.dead_letter.reason": dead.reason.value,
                                 "mcp.router.attempts": attempts})
        properties = dead_letter_properties(envelope, dead, attempts=attempts, now=self.clock(),
                                            trace=inject(span))
        type_label = self._type_label(dead.message_type, config)
        deadline = time.monotonic() + self.hold_limit
        with use_span(span, end_on_exit=True):
            while (failed := await self._publish_dead_letter(dead, envelope, config,
                                                             properties, parent)) is not None:
                if isinstance(failed.error, Unsendable):
                    record_failure(span, "unsendable", str(failed.error))
                    log.error("the dead letter (%s) cannot be encoded either (%s): rejected "
                              "without requeue, for the ingress queue's own dead-lettering",
                              dead.reason.value, failed.error, extra=_about(envelope, parent))
                    self.metrics.malformed_delivery("rejected")
                    return Verdict.REJECT
                if not await self._hold(deadline, envelope):
                    record_failure(span, "hold_limit", "dead letter never confirmed")
                    self.metrics.message("requeued", type_label)
                    return Verdict.REQUEUE
        log.info("dead-lettered (%s): %s", dead.reason.value, dead.error,
                 extra=_about(envelope, parent, dead.message_type, route=dead.route,
                              reason=dead.reason.value))
        self.metrics.dead_letter(dead.reason.value)
        self._note(envelope, "dead_lettered", reason=dead.reason.value, error=dead.error,
                   route=dead.route, attempts=attempts, exchange=exchange)
        if dead.route is None:
            self.metrics.message("dead_lettered", type_label)
        return Verdict.ACK

    async def _publish_dead_letter(self, dead: DeadLetter, envelope: Envelope, config: Config,
                                   properties: Properties, parent: Span) -> Failed | None:
        result = await self.publisher.publish(
            config.topology.dead_letter.exchange, dead_letter_routing_key(dead),
            envelope.body if envelope.dead_body is None else envelope.dead_body,  # sealed
            properties, DEFAULT_RETRY)
        if isinstance(result, Failed):
            level = logging.ERROR if isinstance(result.error, Unroutable) else logging.WARNING
            log.log(level, "dead letter (%s) not confirmed: %s", dead.reason.value,
                    result.error, extra=_about(envelope, parent, dead.message_type))
            return result
        return None

    async def _hold(self, deadline: float, envelope: Envelope) -> bool:
        """Wait for the broker to accept publishes; False once the hold limit is reached."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.error("gave up holding the delivery after %.0fs; it goes back to the queue",
                      self.hold_limit, extra=_about(envelope, None))
            return False
        await self.publisher.wait_usable(remaining)
        await self.publisher.sleep(min(HOLD_PAUSE, max(remaining, 0)))
        return True


def _about(envelope: Envelope, span: Span | None, message_type: str | None = None,
           **more: Any) -> dict[str, Any]:
    """The log context of one message: id, type, trace id and whatever else is given."""
    trace_id = span_trace_id(span) if span is not None else None
    return context(envelope.properties.message_id, message_type or envelope.properties.type,
                   trace_id=trace_id, **more)
