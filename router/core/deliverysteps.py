"""The values of the delivery step (``router.core.delivery``): jobs, facts, actions.

Everything is frozen; every alternative is its own class, so ``match`` with
``assert_never`` proves each one is handled (the events are in
``router.core.deliveryevents``).  A ``Job`` is what one delivery
asks for (a copy to publish, a whole message to park, a dead letter);
``Progress`` is where it stands; ``Facts`` is the snapshot of the world the
next decision reads (the time, the breaker, live consumers); an ``Event`` is
what just happened and an ``Action`` is what to do next.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from router.config.policies import RetryPolicy
from router.core.breakers import Admission, State
from router.core.deliveryevents import PublishFailure
from router.core.ladder import RetryState, WholeParked
from router.core.outcome import Copy, Dead, DeadCopy, DeadLetter

__all__ = [
    "Action",
    "AskBreaker",
    "BreakerFacts",
    "BreakerNews",
    "CameFrom",
    "CopyDeadLetter",
    "CopyJob",
    "CopyResult",
    "Done",
    "Facts",
    "Hold",
    "Job",
    "MessageResult",
    "NoConsumer",
    "Park",
    "ParkWhy",
    "Progress",
    "Publish",
    "SendDeadLetter",
    "ShapeJob",
    "Step",
    "Tell",
    "Verdict",
    "WholeDeadLetter",
]


class Verdict(Enum):
    """How the ingress delivery is settled."""

    ACK = "ack"  # every copy, retry or dead letter is confirmed
    REQUEUE = "requeue"  # give the delivery back (counts toward the delivery limit)
    REJECT = "reject"  # not even its dead letter encodes: the queue's own dead-lettering


class CopyResult(StrEnum):
    """The ``result`` label of ``mcp_router_copies_total`` (SPEC: "Metrics")."""

    DELIVERED = "delivered"
    RETRY_SCHEDULED = "retry_scheduled"
    CONSUMER_WAIT = "consumer_wait"
    CIRCUIT_WAIT = "circuit_wait"
    DEAD_LETTERED = "dead_lettered"


class MessageResult(StrEnum):
    """The ``result`` label of ``mcp_router_messages_total`` (SPEC: "Metrics")."""

    ROUTED = "routed"
    REQUEUED = "requeued"
    DEAD_LETTERED = "dead_lettered"
    SHAPED = "shaped"


class ParkWhy(Enum):
    """Why something is parked in the retry tier."""

    RETRY = "retry"  # a round of the ladder
    CONSUMER_WAIT = "consumer_wait"  # the route has no live consumer yet
    CIRCUIT_WAIT = "circuit_wait"  # the destination's circuit is open
    SHAPED = "shaped"  # a whole message over its rate limit


class BreakerNews(Enum):
    """What a publish tells the destination's breaker."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # returned or nacked: the destination's own failure
    RELEASED = "released"  # the broker was unusable: nothing about the destination


# -- jobs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CameFrom:
    """Where the delivery was published, and by whom (for the retry headers)."""

    exchange: str
    routing_key: str
    publisher: str | None


@dataclass(frozen=True, slots=True)
class CopyJob:
    """Deliver one routed copy; ``prior`` is its state when it came back from the tier."""

    copy: Copy
    message_type: str
    policy: RetryPolicy
    came_from: CameFrom
    delivery_attempt: int  # counted in a no_consumer dead letter
    prior: RetryState | None = None


@dataclass(frozen=True, slots=True)
class ShapeJob:
    """Park the whole message for ``delay`` seconds (rate-limit shaping)."""

    delay: float
    reason: str
    message_type: str
    came_from: CameFrom


@dataclass(frozen=True, slots=True)
class WholeDeadLetter:
    """Dead-letter the whole message: nothing of it was routed."""

    dead: DeadLetter
    attempts: int


@dataclass(frozen=True, slots=True)
class CopyDeadLetter:
    """Dead-letter one copy (its route and destination named): the rest go their way."""

    dead: DeadCopy
    attempts: int


Job = CopyJob | ShapeJob | WholeDeadLetter | CopyDeadLetter


# -- facts and progress --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoConsumer:
    """The route has no live consumer; its ``unconsumed`` rule says what to do."""

    dead_letter: bool  # else: wait ``wait`` seconds in the retry tier
    wait: float
    where: str


@dataclass(frozen=True, slots=True)
class BreakerFacts:
    """The copy's destination breaker, as it stands now."""

    state: State
    wait: float  # how long a copy waits in the tier while it is open
    why: str


@dataclass(frozen=True, slots=True)
class Facts:
    """The world a decision reads: ``now`` (monotonic seconds), breaker, live consumers."""

    now: float
    breaker: BreakerFacts | None = None  # None: no breaker covers the destination
    no_consumer: NoConsumer | None = None  # None: the route has a consumer (or no rule)


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a job stands between two steps."""

    job: Job
    deadline: float  # the delivery is given back when still held at this time
    attempts: int = 0  # publish attempts so far, both tiers
    retries: int = 0  # broker-tier rounds done
    admission: Admission | None = None  # how the breaker let the copy in flight go
    failure: PublishFailure | None = None  # the last publish's failure, being handled
    parked_for: ParkWhy | None = None  # the park in flight
    dead: DeadCopy | None = None  # the copy was given up: its dead letter


# -- actions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish the copy (confirmed, mandatory, with the policy's in-process attempts)."""


@dataclass(frozen=True, slots=True)
class AskBreaker:
    """Ask the destination's breaker whether the copy may go (``Admitted``)."""


@dataclass(frozen=True, slots=True)
class Tell:
    """Tell the breaker how the publish it admitted as ``admission`` went."""

    news: BreakerNews
    admission: Admission
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Park:
    """Park in the retry queue of ``delay``; ``failure`` is what made a retry round."""

    delay: float
    state: RetryState | WholeParked
    why: ParkWhy
    failure: PublishFailure | None = None


@dataclass(frozen=True, slots=True)
class SendDeadLetter:
    """Publish ``dead``; ``gave_up``: the copy was given up just now (count it)."""

    dead: Dead
    attempts: int
    gave_up: bool = False
    failure: PublishFailure | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """Wait until the broker may accept publishes again (never past ``until``)."""

    until: float


@dataclass(frozen=True, slots=True)
class Done:
    """The job is settled: ``verdict``, and the copy's ``result`` to count (if any)."""

    verdict: Verdict
    result: CopyResult | None
    hold_expired: bool = False  # given back because the hold limit was reached


Action = Publish | AskBreaker | Tell | Park | SendDeadLetter | Hold | Done


@dataclass(frozen=True, slots=True)
class Step:
    """What ``step`` returns: the new progress and the action to perform."""

    progress: Progress
    action: Action
