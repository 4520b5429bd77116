"""Settlement and both retry tiers, over a scripted fake of the broker's channels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from router.broker.publish import Publisher
from router.broker.settle import Settler, Verdict
from router.broker.shadows import ShadowSender
from router.config.configuration import Config, load_config
from router.config.unconsumed_rules import UnconsumedRule
from router.core.envelope import Envelope, Properties
from router.core.ladder import RetryState
from router.core.outcome import Copy, DeadLetter, Decoded, Forward, Reason
from router.errors import DeliveryFailed, Refused, TransientFailure, Unroutable, Unsendable
from router.observe.journal import Journal
from router.observe.metrics import Metrics
from tests.unit.conftest import WriteConfig

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
RETRY_QUEUE_1S = "mcp.router.ingress.retry.1000ms"


@dataclass
class ScriptedChannels:
    """Fails the publishes to an exchange (or queue, via "") as scripted, records the rest."""

    failures: dict[str, Iterator[DeliveryFailed | None]] = field(default_factory=dict)
    sent: list[tuple[str, str, Properties]] = field(default_factory=list)
    attempts: int = 0
    waits: int = 0

    def fail(self, target: str, *errors: DeliveryFailed | None) -> None:
        self.failures[target] = iter(errors)

    async def publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: Properties) -> None:
        self.attempts += 1
        target = exchange or routing_key
        error = next(self.failures.get(target, iter(())), None)
        if error is not None:
            raise error
        self.sent.append((exchange, routing_key, properties))

    async def wait_usable(self, within: float) -> bool:
        self.waits += 1
        return True

    def to(self, target: str) -> list[tuple[str, str, Properties]]:
        return [s for s in self.sent if (s[0] or s[1]) == target]


@dataclass
class Harness:
    channels: ScriptedChannels
    settler: Settler
    sleeps: list[float]
    config: Config


@pytest.fixture
def harness(write_config: WriteConfig) -> Harness:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    channels = ScriptedChannels()
    root = write_config(topology="exchanges: [{name: orders}, {name: audit}]\n")
    settler = Settler(Publisher(channels, sleep), Metrics(), router_user="router",
                      clock=lambda: NOW, hold_limit=5.0)
    return Harness(channels, settler, sleeps, load_config(root))


ENVELOPE = Envelope(b"{}", Properties(message_id="m-1", type="T", user_id="svc",
                                      headers={"x-mcp-reason": "forged"}),
                    exchange="mcp.ingress", routing_key="T")
FORWARD = Forward(Decoded("T", None, {}), (Copy("r1", "orders", "a"), Copy("r2", "audit", "b")))
PARENT = NonRecordingSpan(SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331,
                                      is_remote=True, trace_flags=TraceFlags(1)))


async def test_every_copy_confirmed_means_ack(harness: Harness) -> None:
    """Both copies published on the first attempt: ack, no sleeps."""
    verdict = await harness.settler.settle(FORWARD, ENVELOPE, harness.config, PARENT)

    assert verdict is Verdict.ACK
    assert [(e, k) for e, k, _ in harness.channels.sent] == [("orders", "a"), ("audit", "b")]
    assert harness.sleeps == []


async def test_transient_failure_is_retried_with_backoff_then_succeeds(harness: Harness) -> None:
    """A nack then a timeout are retried after 50 ms and 100 ms; the third try lands."""
    harness.channels.fail("orders", TransientFailure("nack"), TransientFailure("timeout"))

    verdict = await harness.settler.settle(FORWARD, ENVELOPE, harness.config, PARENT)

    assert verdict is Verdict.ACK
    assert harness.sleeps == [0.05, 0.1]
    assert harness.channels.attempts == 4


async def test_copy_that_keeps_failing_is_parked_on_the_broker(harness: Harness) -> None:
    """After three failed attempts the copy goes to the 1 s retry queue, with its state."""
    harness.channels.fail("orders", *[TransientFailure("lost")] * 3)

    verdict = await harness.settler.settle(FORWARD, ENVELOPE, harness.config, PARENT)

    assert verdict is Verdict.ACK
    [(exchange, queue, props)] = harness.channels.to(RETRY_QUEUE_1S)
    assert (exchange, queue) == ("", RETRY_QUEUE_1S)
    assert props.user_id == "router"
    h = props.headers
    assert (h["x-mcp-retry-route"], h["x-mcp-retry-exchange"], h["x-mcp-retry-routing-key"]) \
        == ("r1", "orders", "a")
    assert (h["x-mcp-attempts"], h["x-mcp-retries"]) == (3, 1)
    assert h["x-mcp-publisher"] == "svc"
    assert h["x-mcp-original-exchange"] == "mcp.ingress"
    assert "lost" in h["x-mcp-last-error"]
    assert "x-mcp-reason" not in h
    assert harness.channels.to("audit")  # the other copy was not held back


async def test_last_round_failing_transiently_is_retries_exhausted(harness: Harness) -> None:
    """A copy on its last broker round that fails again is dead-lettered with every attempt."""
    prior = RetryState("r1", "orders", "a", attempts=9, retries=3, last_error="x",
                       original_exchange="mcp.ingress", original_routing_key="T",
                       publisher="svc")
    outcome = Forward(FORWARD.message, (Copy("r1", "orders", "a"),), prior)
    harness.channels.fail("orders", *[TransientFailure("nack")] * 3)

    verdict = await harness.settler.settle(outcome, ENVELOPE, harness.config, PARENT)

    assert verdict is Verdict.ACK
    [(_, key, props)] = harness.channels.to("mcp.dlx")
    assert key == "retries_exhausted.T"
    assert props.headers["x-mcp-attempts"] == 12
    assert props.headers["x-mcp-route"] == "r1"
    assert props.headers["x-mcp-destination-exchange"] == "orders"
    assert props.headers["x-mcp-destination-routing-key"] == "a"


async def test_last_round_unroutable_is_dead_lettered_as_unroutable(harness: Harness) -> None:
    """When the destination never became routable the reason is ``unroutable``."""
    prior = RetryState("r2", "audit", "b", 6, 3, "NO_ROUTE", "mcp.ingress", "T", "svc")
    outcome = Forward(FORWARD.message, (Copy("r2", "audit", "b"),), prior)
    harness.channels.fail("audit", *[Unroutable("NO_ROUTE")] * 3)

    verdict = await harness.settler.settle(outcome, ENVELOPE, harness.config, PARENT)

    assert verdict is Verdict.ACK
    [(_, key, props)] = harness.channels.to("mcp.dlx")
    assert key == "unroutable.T"
    assert "NO_ROUTE" in props.headers["x-mcp-error"]
    assert props.user_id is None
    assert props.headers["x-mcp-publisher"] == "svc"
    assert props.headers["x-mcp-dead-lettered-at"] == "2026-11-24T12:00:00.000Z"


async def test_broker_refusing_everything_holds_the_delivery(harness: Harness) -> None:
    """Copy and retry queue both failing: the router waits for the broker, then succeeds."""
    harness.channels.fail("orders", *[TransientFailure("blocked")] * 3, None)
    harness.channels.fail(RETRY_QUEUE_1S, *[TransientFailure("blocked")] * 3)
    outcome = Forward(FORWARD.message, (Copy("r1", "orders", "a"),))

    verdict = await harness.settler.settle(outcome, ENVELOPE, harness.config, PARENT)

    assert verdict is Verdict.ACK
    assert harness.channels.waits == 1
    assert harness.channels.to("orders")


async def test_dead_letter_that_cannot_be_published_is_held_then_requeued(
        write_config: WriteConfig) -> None:
    """If even the dead letter is never confirmed, the delivery goes back after the hold."""
    channels = ScriptedChannels()
    channels.fail("mcp.dlx", *[TransientFailure("blocked")] * 1000)

    async def sleep(_: float) -> None:
        return None

    settler = Settler(Publisher(channels, sleep), Metrics(), hold_limit=0.0)
    config = load_config(write_config(topology="exchanges: []\n"))

    verdict = await settler.settle(DeadLetter(Reason.MALFORMED, "not JSON", "T"), ENVELOPE,
                                   config, PARENT)

    assert verdict is Verdict.REQUEUE


async def test_input_dead_letter_counts_the_delivery_attempt(harness: Harness) -> None:
    """A redelivered bad message (x-delivery-count 2) is dead-lettered with attempts 3."""
    envelope = Envelope(b"x", Properties(message_id="m", headers={"x-delivery-count": 2}),
                        redelivered=True)
    dead = DeadLetter(Reason.MALFORMED, "not JSON", None)

    verdict = await harness.settler.settle(dead, envelope, harness.config, PARENT)

    assert verdict is Verdict.ACK
    [(_, key, props)] = harness.channels.sent
    assert key == "malformed.unknown"
    assert props.headers["x-mcp-attempts"] == 3
    assert "x-delivery-count" not in props.headers


@pytest.mark.parametrize("forged", [2**63 - 1, 1000, -5, "7"])
async def test_a_publisher_set_delivery_count_is_not_counted(harness: Harness,
                                                             forged: object) -> None:
    """On a first delivery x-delivery-count is the publisher's: attempts stays 1."""
    envelope = Envelope(b"x", Properties(message_id="m", headers={"x-delivery-count": forged}))

    await harness.settler.settle(DeadLetter(Reason.MALFORMED, "not JSON", None), envelope,
                                 harness.config, PARENT)

    [(_, _, props)] = harness.channels.sent
    assert props.headers["x-mcp-attempts"] == 1


async def test_an_absurd_broker_count_is_written_in_range(harness: Harness) -> None:
    """A redelivery count past the 32-bit range never makes an unencodable header."""
    envelope = Envelope(b"x", Properties(message_id="m", headers={"x-delivery-count": 2**63 - 1}),
                        redelivered=True)

    await harness.settler.settle(DeadLetter(Reason.MALFORMED, "not JSON", None), envelope,
                                 harness.config, PARENT)

    [(_, _, props)] = harness.channels.sent
    assert props.headers["x-mcp-attempts"] == 2


BREAKER_TOPOLOGY = {
    "exchanges": [{"name": "orders", "type": "topic"}],
    "queues": [{"name": "billing", "type": "quorum"}],
    "bindings": [{"exchange": "orders", "queue": "billing", "routing_key": "#"}],
    "routes": [{"name": "r1", "message_type": "T", "to": [{"exchange": "orders"}]}],
}
WAIT_QUEUE = "mcp.router.ingress.retry.250ms"


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def guarded(write_config: WriteConfig) -> tuple[Harness, Clock]:
    """A settler whose destination ``orders`` has a breaker: 2 refusals open it for 10 s."""
    async def sleep(_: float) -> None:
        return None

    channels, clock = ScriptedChannels(), Clock()
    root = write_config(topology=BREAKER_TOPOLOGY, schemas={"T/v1.json": {}}, policies={
        "b.yaml": {"circuit_breakers": [{"exchange": "orders", "failures": 2,
                                         "open_for": "10s", "wait": "250ms"}]}})
    settler = Settler(Publisher(channels, sleep), Metrics(), router_user="router",
                      clock=lambda: NOW, hold_limit=5.0, monotonic=clock)
    return Harness(channels, settler, [], load_config(root)), clock


ONE_COPY = Forward(FORWARD.message, (Copy("r1", "orders", "a"),))


async def _settle_failing(harness: Harness, error: DeliveryFailed, times: int = 2) -> None:
    """Settle one-copy messages ``times`` times, every publish to ``orders`` failing."""
    harness.channels.fail("orders", *[error] * (3 * times))
    for _ in range(times):
        await harness.settler.settle(ONE_COPY, ENVELOPE, harness.config, PARENT)


async def test_refusals_open_the_circuit_and_later_copies_wait_unpublished(
        guarded: tuple[Harness, Clock]) -> None:
    """Once open, a copy is not tried: it waits in the breaker's retry queue, no round spent."""
    harness, _ = guarded
    await _settle_failing(harness, Refused("nack"))
    tried = harness.channels.attempts

    verdict = await harness.settler.settle(ONE_COPY, ENVELOPE, harness.config, PARENT)

    assert verdict is Verdict.ACK
    assert harness.channels.attempts == tried + 1  # only the park in the wait queue
    opener, waiter = harness.channels.to(WAIT_QUEUE)  # the copy that opened it waits too
    props = waiter[2]
    assert props.headers["x-mcp-retries"] == 0
    assert opener[2].headers["x-mcp-attempts"] == 3
    assert props.headers["x-mcp-last-error"].startswith("circuit open for orders/a: 2 "
                                                        "consecutive publishes refused")


async def test_lost_connection_does_not_open_the_circuit(
        guarded: tuple[Harness, Clock]) -> None:
    """Failures that say nothing about the destination are not counted against it."""
    harness, _ = guarded
    await _settle_failing(harness, TransientFailure("lost"))

    await harness.settler.settle(ONE_COPY, ENVELOPE, harness.config, PARENT)

    assert harness.channels.to(WAIT_QUEUE) == []
    assert harness.channels.to("orders") == [harness.channels.sent[-1]]


async def test_probe_after_open_for_closes_the_circuit(guarded: tuple[Harness, Clock]) -> None:
    """Ten seconds after opening, one copy is published as the probe; it lands and closes."""
    harness, clock = guarded
    await _settle_failing(harness, Unroutable("NO_ROUTE"))
    clock.now = 10.0

    await harness.settler.settle(ONE_COPY, ENVELOPE, harness.config, PARENT)
    await harness.settler.settle(ONE_COPY, ENVELOPE, harness.config, PARENT)

    assert len(harness.channels.to("orders")) == 2
    assert len(harness.channels.to(WAIT_QUEUE)) == 1  # the copy whose refusal opened it


@pytest.mark.parametrize(("action", "target", "header"), [
    ("wait", "mcp.router.ingress.retry.1000ms", "x-mcp-last-error"),
    ("dead_letter", "mcp.dlx", "x-mcp-error"),
])
async def test_copy_of_a_route_without_consumer_follows_the_policy(
        harness: Harness, action: str, target: str, header: str) -> None:
    """``unconsumed`` says wait (park it, no round spent) or dead_letter (as no_consumer);
    the copy is not published to its destination, the other copy is."""
    rule = UnconsumedRule("*", action, 1.0, 0.0, "policies/d.yaml:2")
    harness.settler.holds = lambda route, _type, _config: rule if route == "r1" else None

    verdict = await harness.settler.settle(FORWARD, ENVELOPE, harness.config, PARENT)

    assert verdict is Verdict.ACK
    assert harness.channels.to("orders") == []
    assert harness.channels.to("audit")
    [(_, key, props)] = harness.channels.to(target)
    assert "no live" in props.headers[header]
    if action == "dead_letter":
        assert key == "no_consumer.T"
    else:
        assert props.headers["x-mcp-retries"] == 0


async def test_the_journal_hears_each_copy_its_confirmation_the_retry_and_the_dead_letter(
        harness: Harness) -> None:
    """What settlement did is recorded for ``follow``: confirmed and refused copies, the
    retry round it was parked for, and a dead letter with its reason."""
    harness.settler.journal = Journal(10)
    harness.channels.fail("orders", *[TransientFailure("lost")] * 3)
    await harness.settler.settle(FORWARD, ENVELOPE, harness.config, PARENT)
    await harness.settler.settle(DeadLetter(Reason.SCHEMA_INVALID, "/x: bad", "T"), ENVELOPE,
                                 harness.config, PARENT)

    record = harness.settler.journal.get("m-1")

    assert record is not None
    events = [{k: v for k, v in e.items() if k != "at"} for e in record["events"]]
    assert sorted(events, key=str) == sorted([
        {"event": "copy", "route": "r1", "exchange": "orders", "routing_key": "a",
         "attempts": 3, "confirmed": False, "error": "lost"},
        {"event": "retry", "route": "r1", "round": 1, "delay_seconds": 1.0, "error": "lost"},
        {"event": "copy", "route": "r2", "exchange": "audit", "routing_key": "b",
         "attempts": 1, "confirmed": True, "error": None},
        {"event": "dead_lettered", "reason": "schema_invalid", "error": "/x: bad",
         "route": None, "attempts": 1, "exchange": "mcp.dlx"}], key=str)


async def test_a_copy_that_cannot_be_encoded_is_dead_lettered_as_malformed(
        harness: Harness) -> None:
    """An encoding failure is permanent: no retry round, the copy is dead-lettered at once."""
    outcome = Forward(FORWARD.message, (Copy("r1", "orders", "a"),), None)
    harness.channels.fail("orders", Unsendable("cannot be encoded: OverflowError"))

    verdict = await harness.settler.settle(outcome, ENVELOPE, harness.config, PARENT)

    assert verdict is Verdict.ACK
    assert harness.channels.attempts == 2  # the copy once, then its dead letter
    [(_, key, props)] = harness.channels.to("mcp.dlx")
    assert key == "malformed.T"
    assert "OverflowError" in props.headers["x-mcp-error"]


async def test_a_dead_letter_that_cannot_be_encoded_is_rejected(harness: Harness) -> None:
    """When not even the dead letter encodes, the delivery is rejected, counted, not held."""
    harness.channels.fail("mcp.dlx", Unsendable("cannot be encoded: TypeError"))

    verdict = await harness.settler.settle(DeadLetter(Reason.MALFORMED, "bad", "T"), ENVELOPE,
                                           harness.config, PARENT)

    assert verdict is Verdict.REJECT
    assert harness.channels.waits == 0
    assert harness.settler.metrics.malformed_deliveries.labels("rejected")._value.get() == 1


async def test_shadow_copies_go_on_the_side_and_never_count_toward_the_verdict(
        harness: Harness) -> None:
    """The real copy is published by the settler; the shadow is handed to the shadow sender
    (or, without one, not sent at all), never retried or dead-lettered with the real ones."""
    forward = Forward(Decoded("T", None, {}), (Copy("r", "orders", "a"),
                                               Copy("r", "audit", "b", branch="b", shadow=True)))
    harness.channels.fail("audit", *[Unroutable("no queue")] * 10)
    shadow_channels = ScriptedChannels()

    async def shadows() -> ScriptedChannels:
        return shadow_channels

    without = await harness.settler.settle(forward, ENVELOPE, harness.config, PARENT)
    harness.settler.shadows = ShadowSender(shadows, harness.settler.metrics)
    with_sender = await harness.settler.settle(forward, ENVELOPE, harness.config, PARENT)
    await harness.settler.shadows.drain(1.0)

    assert without is with_sender is Verdict.ACK
    assert [(e, k) for e, k, _ in harness.channels.sent] == [("orders", "a"), ("orders", "a")]
    assert [(e, k) for e, k, _ in shadow_channels.sent] == [("audit", "b")]
    assert harness.sleeps == []
