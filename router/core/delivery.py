"""What happens to each copy after ``decide``: a pure step function (sans-I/O).

``step(progress, event, facts) -> Step`` is the whole of the delivery logic, in
the manner of h11 and tenacity: it never awaits, reads no clock and touches no
broker.  ``router.broker.settle`` interprets the ``Action`` it returns (publish,
ask the breaker, tell the breaker, park, dead-letter, hold, done), turns the
broker's answer into the next ``Event`` and calls ``step`` again with fresh
``Facts``.  The four decisions of the settling path are here:

* **no consumer**: a route no live service consumes is dead-lettered
  (``no_consumer``) or parked to wait for one, as its ``unconsumed`` rule says;
* **breaker admission**: a copy to an open circuit waits in the retry tier
  without spending a round; one that fails and opens the circuit waits too;
* **the retry ladder** (``router.core.ladder``): after the in-process attempts
  a copy is parked for the next delay, or dead-lettered once the delays are
  spent (``unroutable`` after a return, ``malformed`` if it cannot be encoded,
  else ``retries_exhausted``);
* **holding**: when the broker accepts nothing (a park or dead letter not
  confirmed) the delivery is held until ``deadline``, then given back.

The value types (jobs, events, actions) live in ``router.core.deliverysteps``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import assert_never

from router.config.rate_rules import Excess, RateRule
from router.core.breakers import Admission, State
from router.core.deliveryevents import (
    Admitted,
    Begin,
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
    PublishFailure,
    Returned,
    Told,
    Unencodable,
)
from router.core.deliverysteps import (
    AskBreaker,
    BreakerNews,
    CopyDeadLetter,
    CopyJob,
    CopyResult,
    Done,
    Facts,
    Hold,
    Job,
    Park,
    ParkWhy,
    Progress,
    Publish,
    SendDeadLetter,
    ShapeJob,
    Step,
    Tell,
    Verdict,
    WholeDeadLetter,
)
from router.core.envelope import Envelope
from router.core.ladder import MAX_COUNT, GiveUp, RetryLater, RetryState, WholeParked, next_step
from router.core.outcome import Dead, DeadCopy, DeadLetter, Delay, Forward, Outcome, Reason

__all__ = ["begin", "combined", "delivery_attempt", "over_rate_limit", "start", "step"]


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


def combined(verdicts: Iterable[Verdict]) -> Verdict:
    """The delivery's verdict from its copies': any requeue wins, then any reject."""
    seen = set(verdicts)
    return next((v for v in (Verdict.REQUEUE, Verdict.REJECT) if v in seen), Verdict.ACK)


def over_rate_limit(outcome: Forward, exceeded: RateRule | None) -> Outcome:
    """``outcome`` unchanged when the message took a token (``exceeded`` None); else shaped
    (parked whole, ``Delay``) or refused (``rate_limited``), as the rule it exceeds says."""
    if exceeded is None:
        return outcome
    message_type = outcome.message.message_type
    shared = ", shared by every replica" if exceeded.shared else ""
    why = (f"over the rate limit of rule {exceeded.match!r} at {exceeded.where} "
           f"({exceeded.rate:g}/s per {exceeded.per}{shared})")
    if exceeded.on_excess == Excess.REJECT:
        return DeadLetter(Reason.RATE_LIMITED, why, message_type)
    return Delay(exceeded.shape_delay, why, message_type)


def begin(job: Job, now: float, hold_limit: float) -> Progress:
    """The progress of a job that has not started; it is held until ``now + hold_limit``."""
    if isinstance(job, CopyJob) and job.prior is not None:
        return Progress(job, now + hold_limit, job.prior.attempts, job.prior.retries)
    return Progress(job, now + hold_limit)


def start(job: Job, hold_limit: float, facts: Facts) -> Step:
    """The first step of ``job``: it is held at most ``hold_limit`` seconds from now."""
    return step(begin(job, facts.now, hold_limit), Begin(), facts)


def step(progress: Progress, event: Event, facts: Facts) -> Step:
    """The next action for ``progress`` after ``event``, given ``facts``."""
    job = progress.job
    match job:
        case CopyJob():
            return _copy_step(progress, job, event, facts)
        case ShapeJob():
            return _shape_step(progress, job, event, facts)
        case WholeDeadLetter() | CopyDeadLetter():
            return _dead_letter_step(progress, job.dead, job.attempts, event, facts)
        case _:
            assert_never(job)


def _shape_step(progress: Progress, job: ShapeJob, event: Event, facts: Facts) -> Step:
    """A whole message parked by rate-limit shaping, held while the broker refuses."""
    match event:
        case Begin() | HoldOver():
            parked = WholeParked(job.reason, job.came_from.exchange,
                                 job.came_from.routing_key, job.came_from.publisher)
            return Step(progress, Park(job.delay, parked, ParkWhy.SHAPED))
        case Parked():
            return Step(progress, Done(Verdict.ACK, None))
        case ParkRefused():
            return _refused(progress, facts)
        case _:
            raise _unexpected(event, job)


def _dead_letter_step(progress: Progress, dead: Dead, attempts: int, event: Event,
                      facts: Facts) -> Step:
    """A dead letter: sent until confirmed, held while the broker refuses it."""
    match event:
        case Begin() | HoldOver():
            return Step(progress, SendDeadLetter(dead, attempts))
        case DeadLettered():
            return Step(progress, Done(Verdict.ACK, None))
        case DeadLetterRefused():
            return _refused(progress, facts)
        case DeadLetterUnencodable():  # the queue's own dead-lettering takes it
            return Step(progress, Done(Verdict.REJECT, None))
        case _:
            raise _unexpected(event, dead)


def _copy_step(progress: Progress, job: CopyJob, event: Event, facts: Facts) -> Step:
    """One routed copy: admitted, published, then delivered, parked or dead-lettered."""
    if progress.dead is not None:  # given up: only its dead letter is left to send
        return _dead_letter_step(progress, progress.dead, progress.attempts, event, facts)
    match event:
        case Begin() | HoldOver():
            return _admit(progress, job, facts)
        case Admitted(admission=admission):
            if admission is Admission.WAIT:
                return _wait(progress, job, facts, ParkWhy.CIRCUIT_WAIT)
            return Step(replace(progress, admission=admission), Publish())
        case Confirmed() | Returned() | Nacked() | ConnectionLost() | Unencodable():
            return _published(progress, job, event, facts)
        case Told():
            return _after_publish(progress, job, facts)
        case Parked():
            return Step(progress, Done(Verdict.ACK, _PARK_RESULT[progress.parked_for]))
        case ParkRefused():
            return _refused(progress, facts)
        case _:
            raise _unexpected(event, job)


_PARK_RESULT = {ParkWhy.RETRY: CopyResult.RETRY_SCHEDULED,
                ParkWhy.CONSUMER_WAIT: CopyResult.CONSUMER_WAIT,
                ParkWhy.CIRCUIT_WAIT: CopyResult.CIRCUIT_WAIT, None: None}


def _admit(progress: Progress, job: CopyJob, facts: Facts) -> Step:
    """Whether the copy may go now: no live consumer first, then its breaker."""
    if progress.admission is not None or progress.failure is not None:
        progress = replace(progress, admission=None, failure=None)
    consumer = facts.no_consumer
    if consumer is not None and consumer.dead_letter:
        route = job.copy.route
        dead = DeadCopy(Reason.NO_CONSUMER, f"route {route!r}: no live service consumes "
                                            f"it ({consumer.where})", job.message_type,
                        job.copy)
        progress = replace(progress, dead=dead)
        return Step(progress, SendDeadLetter(dead, job.delivery_attempt, gave_up=True))
    if consumer is not None:
        return _wait(progress, job, facts, ParkWhy.CONSUMER_WAIT)
    if facts.breaker is None:
        return Step(progress, Publish())
    return Step(progress, AskBreaker())


def _wait(progress: Progress, job: CopyJob, facts: Facts, why: ParkWhy) -> Step:
    """Park a copy that may not go now, without spending a round."""
    if why is ParkWhy.CONSUMER_WAIT and facts.no_consumer is not None:
        wait, because = facts.no_consumer.wait, \
            f"no live consumer for route {job.copy.route!r} ({facts.no_consumer.where})"
    elif facts.breaker is not None:
        wait, because = facts.breaker.wait, facts.breaker.why
    else:  # the breaker went away with a reload between two steps: just try again
        return Step(progress, Publish())
    state = _retry_state(progress, job, progress.retries, because)
    return Step(replace(progress, parked_for=why), Park(wait, state, why))


def _published(progress: Progress, job: CopyJob, event: Confirmed | PublishFailure,
               facts: Facts) -> Step:
    """Count the attempts, tell the breaker (if it admitted the copy), then go on."""
    failure = None if isinstance(event, Confirmed) else event
    progress = Progress(progress.job, progress.deadline, progress.attempts + event.attempts,
                        progress.retries, progress.admission, failure, progress.parked_for,
                        progress.dead)  # not replace(): this is every copy's path
    if progress.admission is None:
        return _after_publish(progress, job, facts)
    match event:
        case Confirmed():
            news = BreakerNews.SUCCEEDED
        case Returned() | Nacked():  # the destination's own failure
            news = BreakerNews.FAILED
        case ConnectionLost() | Unencodable():  # says nothing about the destination
            news = BreakerNews.RELEASED
        case _:
            assert_never(event)
    return Step(progress, Tell(news, progress.admission,
                               None if failure is None else str(failure.error)))


def _after_publish(progress: Progress, job: CopyJob, facts: Facts) -> Step:
    """Delivered; or, after a failure, wait for an open circuit or climb the ladder."""
    failure = progress.failure
    if failure is None:
        return Step(progress, Done(Verdict.ACK, CopyResult.DELIVERED))
    if progress.admission is not None and facts.breaker is not None \
            and facts.breaker.state is State.OPEN:
        return Step(replace(progress, admission=None), AskBreaker())  # round kept: it waits
    ladder = next_step(job.policy, progress.retries, failure.error)
    error = str(failure.error)
    match ladder:
        case RetryLater(delay=delay):
            state = _retry_state(progress, job, progress.retries + 1, error)
            return Step(replace(progress, parked_for=ParkWhy.RETRY),
                        Park(delay, state, ParkWhy.RETRY, failure))
        case GiveUp(reason=reason):
            dead = DeadCopy(reason, f"route {job.copy.route!r}: {error}", job.message_type,
                            job.copy)
            return Step(replace(progress, dead=dead),
                        SendDeadLetter(dead, progress.attempts, gave_up=True, failure=failure))
        case _:
            assert_never(ladder)


def _retry_state(progress: Progress, job: CopyJob, rounds: int, error: str) -> RetryState:
    """The headers' state of the copy parked now (its ``origin`` filled in by the shell)."""
    copy, came_from = job.copy, job.came_from
    origin = job.prior.origin if job.prior is not None else None
    return RetryState(copy.route, copy.exchange, copy.routing_key, progress.attempts, rounds,
                      error, came_from.exchange, came_from.routing_key, came_from.publisher,
                      origin, copy.branch)


def _refused(progress: Progress, facts: Facts) -> Step:
    """The broker did not take the park or dead letter: hold, or give the delivery back."""
    if facts.now >= progress.deadline:
        return Step(progress, Done(Verdict.REQUEUE, None, hold_expired=True))
    return Step(progress, Hold(progress.deadline))


def _unexpected(event: Event, what: object) -> AssertionError:
    """An event the action just performed cannot produce: a bug of the interpreter."""
    return AssertionError(f"{type(event).__name__} cannot follow in {type(what).__name__}")

