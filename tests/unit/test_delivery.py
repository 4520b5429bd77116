"""The delivery step, branch by branch: pure, no broker, no clock, no sleep."""

from __future__ import annotations

import pytest

from router.config.breaker_rules import BreakerRule
from router.config.policies import RetryPolicy
from router.config.rate_rules import RateRule
from router.core.breakers import Admission, Breaker, State
from router.core.delivery import begin, combined, over_rate_limit, step
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
    Returned,
    Told,
    Unencodable,
)
from router.core.deliverysteps import (
    AskBreaker,
    BreakerFacts,
    BreakerNews,
    CameFrom,
    CopyDeadLetter,
    CopyJob,
    CopyResult,
    Done,
    Facts,
    Hold,
    NoConsumer,
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
from router.core.ladder import RetryState, WholeParked, backoff_after
from router.core.outcome import Copy, DeadCopy, DeadLetter, Decoded, Delay, Forward, Reason
from router.errors import Refused, TransientFailure, Unroutable, Unsendable

COPY = Copy("r1", "orders", "a")
CAME = CameFrom("mcp.ingress", "T", "svc")
POLICY = RetryPolicy(delays=(1.0, 10.0))
JOB = CopyJob(COPY, "T", POLICY, CAME, delivery_attempt=1)
NOW = Facts(100.0)
CLOSED = BreakerFacts(State.CLOSED, 0.25, "circuit open for orders/a: none")
OPEN = BreakerFacts(State.OPEN, 0.25, "circuit open for orders/a: 2 refused")


def run(progress: Progress, *events: tuple[Event, Facts]) -> list[Step]:
    """Feed ``events`` one after the other; every step taken."""
    steps = []
    for event, facts in events:
        taken = step(progress, event, facts)
        steps.append(taken)
        progress = taken.progress
    return steps


def fresh(job: CopyJob = JOB) -> Progress:
    return begin(job, 100.0, 5.0)


def test_a_copy_without_breaker_or_rule_is_published_then_done() -> None:
    """Begin → publish → confirmed → delivered: the fast path, two steps."""
    first, second = run(fresh(), (Begin(), NOW), (Confirmed(1), NOW))

    assert first.action == Publish()
    assert second.action == Done(Verdict.ACK, CopyResult.DELIVERED)
    assert second.progress.attempts == 1


def test_a_copy_back_from_the_tier_keeps_its_counts() -> None:
    """attempts and rounds start where the parked copy left them."""
    prior = RetryState("r1", "orders", "a", 4, 1, "nack", "mcp.ingress", "T", "svc", "tp")
    progress = begin(CopyJob(COPY, "T", POLICY, CAME, 1, prior), 0.0, 5.0)

    assert (progress.attempts, progress.retries, progress.deadline) == (4, 1, 5.0)


def test_no_consumer_dead_letter_rule_dead_letters_the_copy() -> None:
    """A route no live service consumes, rule dead_letter: no_consumer, counted once."""
    facts = Facts(100.0, no_consumer=NoConsumer(True, 5.0, "policies/u.yaml:3"))
    [taken] = run(fresh(), (Begin(), facts))

    assert isinstance(taken.action, SendDeadLetter)
    assert taken.action.gave_up
    assert taken.action.dead.reason is Reason.NO_CONSUMER
    assert taken.action.dead.route == "r1"
    assert taken.action.dead.destination == COPY


def test_no_consumer_wait_rule_parks_without_a_round() -> None:
    """Rule wait: parked for its wait, rounds unchanged, counted consumer_wait."""
    facts = Facts(100.0, no_consumer=NoConsumer(False, 5.0, "u.yaml:3"))
    parked, done = run(fresh(), (Begin(), facts), (Parked(), facts))

    assert isinstance(parked.action, Park)
    assert (parked.action.delay, parked.action.why) == (5.0, ParkWhy.CONSUMER_WAIT)
    assert parked.action.state.retries == 0
    assert parked.action.state.last_error == "no live consumer for route 'r1' (u.yaml:3)"
    assert done.action == Done(Verdict.ACK, CopyResult.CONSUMER_WAIT)


def test_a_closed_breaker_is_asked_then_told_of_the_success() -> None:
    """A breaker covers the destination: ask it, publish, tell it, done."""
    facts = Facts(100.0, breaker=CLOSED)
    ask, publish, tell, done = run(fresh(), (Begin(), facts), (Admitted(Admission.ALLOW), facts),
                                   (Confirmed(1), facts), (Told(), facts))

    assert ask.action == AskBreaker()
    assert publish.action == Publish()
    assert tell.action == Tell(BreakerNews.SUCCEEDED, Admission.ALLOW, None)
    assert done.action == Done(Verdict.ACK, CopyResult.DELIVERED)


def test_an_open_breaker_parks_the_copy_in_its_wait_queue() -> None:
    """Admission WAIT: parked for the breaker's wait, no round spent, circuit_wait."""
    facts = Facts(100.0, breaker=OPEN)
    _, parked, done = run(fresh(), (Begin(), facts), (Admitted(Admission.WAIT), facts),
                          (Parked(), facts))

    assert isinstance(parked.action, Park)
    assert (parked.action.delay, parked.action.why) == (0.25, ParkWhy.CIRCUIT_WAIT)
    assert parked.action.state.last_error == OPEN.why
    assert done.action == Done(Verdict.ACK, CopyResult.CIRCUIT_WAIT)


def test_a_half_open_probe_that_fails_is_told_failed() -> None:
    """A probe returned by the broker is the destination's failure."""
    facts = Facts(100.0, breaker=BreakerFacts(State.HALF_OPEN, 0.25, "probe"))
    *_, tell = run(fresh(), (Begin(), facts), (Admitted(Admission.PROBE), facts),
                   (Returned(3, Unroutable("no queue")), facts))

    assert tell.action == Tell(BreakerNews.FAILED, Admission.PROBE, "no queue")


def test_a_failure_that_opened_the_circuit_waits_with_its_round_kept() -> None:
    """Told, the breaker is now open: ask it again (it says WAIT), rounds unchanged."""
    closed, opened = Facts(100.0, breaker=CLOSED), Facts(100.0, breaker=OPEN)
    *_, again, parked = run(fresh(), (Begin(), closed), (Admitted(Admission.ALLOW), closed),
                            (Nacked(3, Refused("nack")), closed), (Told(), opened),
                            (Admitted(Admission.WAIT), opened))

    assert again.action == AskBreaker()
    assert isinstance(parked.action, Park)
    assert parked.action.why is ParkWhy.CIRCUIT_WAIT
    assert parked.action.state.retries == 0
    assert parked.action.state.attempts == 3


@pytest.mark.parametrize("event", [ConnectionLost(3, TransientFailure("gone")),
                                   Unencodable(1, Unsendable("2^63"))])
def test_failures_that_say_nothing_of_the_destination_release_the_breaker(
        event: Event) -> None:
    """A lost connection or an unencodable copy never counts against the destination."""
    facts = Facts(100.0, breaker=CLOSED)
    *_, tell = run(fresh(), (Begin(), facts), (Admitted(Admission.ALLOW), facts), (event, facts))

    assert isinstance(tell.action, Tell)
    assert tell.action.news is BreakerNews.RELEASED


def test_the_ladder_parks_a_failed_copy_for_its_next_delay() -> None:
    """Round 1 after a nack: parked 1 s with its state; counted retry_scheduled."""
    _, parked, done = run(fresh(), (Begin(), NOW), (Nacked(3, Refused("nack")), NOW),
                          (Parked(), NOW))

    assert isinstance(parked.action, Park)
    state = parked.action.state
    assert isinstance(state, RetryState)
    assert (parked.action.delay, parked.action.why) == (1.0, ParkWhy.RETRY)
    assert (state.route, state.attempts, state.retries, state.last_error) == ("r1", 3, 1, "nack")
    assert (state.original_exchange, state.publisher) == ("mcp.ingress", "svc")
    assert isinstance(parked.action.failure, Nacked)
    assert done.action == Done(Verdict.ACK, CopyResult.RETRY_SCHEDULED)


@pytest.mark.parametrize(("event", "reason"), [
    (Returned(3, Unroutable("no queue")), Reason.UNROUTABLE),
    (Nacked(3, Refused("nack")), Reason.RETRIES_EXHAUSTED),
    (ConnectionLost(3, TransientFailure("gone")), Reason.RETRIES_EXHAUSTED)])
def test_a_spent_ladder_dead_letters_the_copy(event: Event, reason: Reason) -> None:
    """No rounds left: dead-lettered with its route, unroutable after a return."""
    prior = RetryState("r1", "orders", "a", 6, 2, "x", "mcp.ingress", "T", "svc")
    progress = begin(CopyJob(COPY, "T", POLICY, CAME, 1, prior), 100.0, 5.0)
    _, dead, done = run(progress, (Begin(), NOW), (event, NOW), (DeadLettered(), NOW))

    assert isinstance(dead.action, SendDeadLetter)
    assert (dead.action.dead.reason, dead.action.dead.route) == (reason, "r1")
    assert dead.action.attempts == 9
    assert dead.action.gave_up
    assert done.action == Done(Verdict.ACK, None)


def test_an_unencodable_copy_skips_the_ladder() -> None:
    """It will never encode: malformed at once, whatever rounds are left."""
    _, dead = run(fresh(), (Begin(), NOW), (Unencodable(1, Unsendable("2^63")), NOW))

    assert isinstance(dead.action, SendDeadLetter)
    assert dead.action.dead.reason is Reason.MALFORMED


def test_a_refused_park_holds_then_publishes_the_copy_again() -> None:
    """The broker refused the park: hold until the deadline, then start over."""
    *_, hold, again = run(fresh(), (Begin(), NOW), (Nacked(3, Refused("nack")), NOW),
                          (ParkRefused(), NOW), (HoldOver(), Facts(101.0)))

    assert hold.action == Hold(105.0)
    assert again.action == Publish()


def test_the_hold_expires_and_the_delivery_goes_back() -> None:
    """Past the deadline a refused park requeues, saying the hold expired."""
    late = Facts(105.0)
    *_, done = run(fresh(), (Begin(), NOW), (Nacked(3, Refused("nack")), NOW),
                   (ParkRefused(), late))

    assert done.action == Done(Verdict.REQUEUE, None, hold_expired=True)


def test_a_refused_dead_letter_of_a_copy_is_sent_again_after_the_hold() -> None:
    """A copy given up keeps its dead letter across the hold; it is counted only once."""
    prior = RetryState("r1", "orders", "a", 6, 2, "x", "mcp.ingress", "T", "svc")
    progress = begin(CopyJob(COPY, "T", POLICY, CAME, 1, prior), 100.0, 5.0)
    _, send, hold, again = run(progress, (Begin(), NOW), (Nacked(3, Refused("n")), NOW),
                               (DeadLetterRefused(), NOW), (HoldOver(), NOW))

    assert isinstance(send.action, SendDeadLetter)
    assert send.action.gave_up
    assert isinstance(hold.action, Hold)
    assert isinstance(again.action, SendDeadLetter)
    assert not again.action.gave_up
    assert again.action.dead == send.action.dead


@pytest.mark.parametrize("job", [WholeDeadLetter(DeadLetter(Reason.MALFORMED, "x"), 2),
                                 CopyDeadLetter(DeadCopy(Reason.SCHEMA_INVALID, "v", "T", COPY),
                                                1)])
def test_a_dead_letter_is_sent_held_and_rejected_when_unencodable(
        job: WholeDeadLetter | CopyDeadLetter) -> None:
    """Whole or per copy: send; refused → hold; unencodable → reject; confirmed → ack."""
    progress = begin(job, 100.0, 5.0)
    send, hold, again, reject = run(progress, (Begin(), NOW), (DeadLetterRefused(), NOW),
                                    (HoldOver(), NOW), (DeadLetterUnencodable(), NOW))

    assert send.action == SendDeadLetter(job.dead, job.attempts)
    assert hold.action == Hold(105.0)
    assert again.action == send.action
    assert reject.action == Done(Verdict.REJECT, None)
    [ack] = run(progress, (DeadLettered(), NOW))
    assert ack.action == Done(Verdict.ACK, None)


def test_a_shaped_message_is_parked_whole_and_held_while_refused() -> None:
    """Rate-limit shaping parks a WholeParked (no route pinned), held when refused."""
    progress = begin(ShapeJob(2.0, "over the limit", "T", CAME), 100.0, 5.0)
    park, hold, again, done = run(progress, (Begin(), NOW), (ParkRefused(), NOW),
                                  (HoldOver(), NOW), (Parked(), NOW))

    assert park.action == Park(2.0, WholeParked("over the limit", "mcp.ingress", "T", "svc"),
                               ParkWhy.SHAPED)
    assert hold.action == Hold(105.0)
    assert again.action == park.action
    assert done.action == Done(Verdict.ACK, None)


def test_an_event_that_cannot_happen_is_a_bug() -> None:
    """The interpreter never sends a copy's publish answer to a dead letter."""
    with pytest.raises(AssertionError):
        step(begin(WholeDeadLetter(DeadLetter(Reason.MALFORMED, "x"), 1), 0, 1), Confirmed(1),
             NOW)


def test_verdicts_combine_requeue_first_then_reject() -> None:
    """One requeued copy requeues the delivery; a reject beats an ack."""
    assert combined([Verdict.ACK, Verdict.REJECT, Verdict.REQUEUE]) is Verdict.REQUEUE
    assert combined([Verdict.ACK, Verdict.REJECT]) is Verdict.REJECT
    assert combined([Verdict.ACK]) is Verdict.ACK


RULE = RateRule("T", 1.0, 1.0, "publisher", "shape", 2.0, "policies/r.yaml:1")
FORWARD = Forward(Decoded("T", None, {}), (COPY,))


def test_rate_limit_decisions_are_made_in_the_core() -> None:
    """A token taken: unchanged; over a shaping rule: Delay; over a reject rule: refused."""
    assert over_rate_limit(FORWARD, None) is FORWARD
    shaped = over_rate_limit(FORWARD, RULE)
    assert isinstance(shaped, Delay)
    assert shaped.delay == 2.0
    refused = over_rate_limit(FORWARD, RateRule("T", 1.0, 1.0, "type", "reject", 0.0, "w"))
    assert isinstance(refused, DeadLetter)
    assert refused.reason is Reason.RATE_LIMITED


def test_the_in_process_backoff_is_one_function_for_router_and_sdk() -> None:
    """After n failed calls the n-th wait, the last repeated; nothing before a call."""
    waits = RetryPolicy(attempts=4).backoff_delays()

    assert [backoff_after(waits, n) for n in range(6)] == [0.0, 0.05, 0.1, 0.2, 0.2, 0.2]


def test_the_breaker_runtime_and_the_step_agree_on_a_probe() -> None:
    """A real Breaker's answers, fed to the step, lead from WAIT to a probe after open_for."""
    rule = BreakerRule("orders", "#", 1, None, False, None, 10.0, 0.25, 5.0, "w")
    breaker = Breaker("orders/a", rule, ())
    breaker.failed(Admission.ALLOW, 0.0, "nack")
    facts = Facts(1.0, BreakerFacts(breaker.state, 0.25, "open"))

    [waiting] = run(fresh(), (Admitted(breaker.admit(1.0)), facts))
    [probing] = run(fresh(), (Admitted(breaker.admit(11.0)), facts))

    assert isinstance(waiting.action, Park)
    assert probing.action == Publish()
    assert probing.progress.admission is Admission.PROBE
