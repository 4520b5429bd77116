"""What is set aside on the broker: copies parked in the retry tier, and dead letters.

The ``Park`` and ``SendDeadLetter`` actions of the delivery step, performed for
a ``router.broker.settlerun.Run``: the publish (confirmed, ``DEFAULT_RETRY``),
its producer span, and once confirmed the journal note, log line and counts
the SPEC promises.  The step decides when; nothing here does.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import assert_never

from opentelemetry.trace import Span, use_span

from router.broker.publish import Failed
from router.broker.settleparts import RunState
from router.config.policies import DEFAULT_RETRY
from router.config.retry_policy import retry_queue_name
from router.core.deliveryevents import (
    DeadLettered,
    DeadLetterRefused,
    DeadLetterUnencodable,
    Event,
    Parked,
    ParkRefused,
)
from router.core.deliverysteps import (
    CopyJob,
    CopyResult,
    MessageResult,
    Park,
    ParkWhy,
    SendDeadLetter,
    WholeDeadLetter,
)
from router.core.journalnotes import Note
from router.core.ladder import RetryState, WholeParked
from router.core.outbound import dead_letter_properties, dead_letter_routing_key, retry_properties
from router.core.outcome import Dead, route_of
from router.core.sealing import parked_body
from router.errors import DeliveryFailed, Unroutable, Unsendable
from router.observe.conventions import record_failure
from router.observe.metrics import UNKNOWN
from router.observe.tracing import inject

__all__ = ["dead_letter", "park"]

log = logging.getLogger("router.settle")

_WAITS = (ParkWhy.CONSUMER_WAIT, ParkWhy.CIRCUIT_WAIT)


async def park(run: RunState, park: Park) -> Event:
    """Park in the retry tier; note why once the broker confirmed it."""
    state = park.state
    if park.failure is not None:
        record_failure(run.copy_span(), type(park.failure.error).__name__,
                       str(park.failure.error))
    if park.why in _WAITS:
        run.copy_span().add_event("held", {"mcp.router.held_because": state.last_error})
    if isinstance(state, RetryState) and state.origin is None:
        state = replace(state, origin=inject(run.parent).get("traceparent"))
    route = state.route if isinstance(state, RetryState) else ""
    if not await _publish_park(run, state, park.delay, route):
        return ParkRefused()
    match park.why:
        case ParkWhy.RETRY:
            run.note(Note.RETRY, route=route, round=state.retries, delay_seconds=park.delay,
                       error=state.last_error)
        case ParkWhy.CONSUMER_WAIT | ParkWhy.CIRCUIT_WAIT:
            run.note(Note.HELD, route=route, delay_seconds=park.delay, why=state.last_error)
        case ParkWhy.SHAPED:
            message_type = getattr(run.job, "message_type", UNKNOWN)
            run.s.metrics.message(MessageResult.SHAPED, message_type)
            run.note(Note.PARKED, delay_seconds=park.delay, why=state.last_error)
        case _:
            assert_never(park.why)
    return Parked()

async def _publish_park(run: RunState, state: RetryState | WholeParked, delay: float,
                    route: str) -> bool:
    """Publish to the retry queue of ``delay``; True once confirmed."""
    queue = retry_queue_name(run.config.topology.ingress.queue, delay)
    span = run.producer("", queue, route=route or None,
                          **{"mcp.router.retry.round": state.retries,
                             "mcp.router.retry.delay_ms": round(delay * 1000)})
    properties = retry_properties(run.envelope, state, inject(span), run.s.router_user)
    with use_span(span, end_on_exit=True):
        body = parked_body(run.envelope, run.config, run.s.sealer(run.config))  # sealed
        result = await run.s.publisher.publish("", queue, body, properties, DEFAULT_RETRY)
        if isinstance(result, Failed):
            record_failure(span, type(result.error).__name__, str(result.error))
    about = run.about(route=route or None)
    if isinstance(result, Failed):
        log.warning("could not park the copy for retry in %s: %s", queue, result.error,
                    extra=about)
        return False
    log.info("retry %d in %.3gs: %s", state.retries, delay, state.last_error, extra=about)
    return True

async def dead_letter(run: RunState, send: SendDeadLetter) -> Event:
    """Publish a dead letter; count and note it once the broker confirmed it."""
    dead, exchange = send.dead, run.config.topology.dead_letter.exchange
    if send.gave_up and isinstance(run.job, CopyJob):
        run.s.metrics.copy(run.job.copy.route, CopyResult.DEAD_LETTERED)
    if send.failure is not None:
        record_failure(run.copy_span(), type(send.failure.error).__name__,
                       str(send.failure.error))
    span = run.dead_letter_span(exchange, dead, send.attempts)
    properties = dead_letter_properties(run.envelope, dead, attempts=send.attempts,
                                        now=run.s.clock(), trace=inject(span))
    body = run.envelope.body if run.envelope.dead_body is None else \
        run.envelope.dead_body  # sealed
    result = await run.s.publisher.publish(exchange, dead_letter_routing_key(dead), body,
                                            properties, DEFAULT_RETRY)
    if isinstance(result, Failed):
        return _dead_letter_failed(run, dead, result.error, span)
    log.info("dead-lettered (%s): %s", dead.reason.value, dead.error,
             extra=run.about(dead.message_type, route=route_of(dead),
                               reason=dead.reason.value))
    run.s.metrics.dead_letter(dead.reason.value)
    run.note(Note.DEAD_LETTERED, reason=dead.reason.value, error=dead.error,
               route=route_of(dead), attempts=send.attempts, exchange=exchange)
    if isinstance(run.job, WholeDeadLetter):
        run.s.metrics.message(MessageResult.DEAD_LETTERED, run.type_label(dead.message_type))
    return DeadLettered()

def _dead_letter_failed(run: RunState, dead: Dead, error: DeliveryFailed,
                    span: Span) -> Event:
    level = logging.ERROR if isinstance(error, Unroutable) else logging.WARNING
    log.log(level, "dead letter (%s) not confirmed: %s", dead.reason.value, error,
            extra=run.about(dead.message_type))
    if not isinstance(error, Unsendable):
        return DeadLetterRefused()
    record_failure(span, "unsendable", str(error))
    log.error("the dead letter (%s) cannot be encoded either (%s): rejected without "
              "requeue, for the ingress queue's own dead-lettering", dead.reason.value,
              error, extra=run.about())
    run.s.metrics.malformed_delivery("rejected")
    return DeadLetterUnencodable()
