"""Settlement and in-process retries, over a scripted fake of the broker's channels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from router.config import Config
from router.envelope import Envelope, Properties
from router.errors import DeliveryFailed, TransientFailure, Unroutable
from router.metrics import Metrics
from router.outcome import Copy, DeadLetter, Decoded, Forward, Reason
from router.publish import Publisher
from router.settle import Settler, Verdict
from tests.unit.conftest import WriteConfig

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@dataclass
class ScriptedChannels:
    """Fails the publishes to an exchange as scripted, records the rest."""

    failures: dict[str, Iterator[DeliveryFailed | None]] = field(default_factory=dict)
    sent: list[tuple[str, str, Properties]] = field(default_factory=list)
    attempts: int = 0

    def fail(self, exchange: str, *errors: DeliveryFailed | None) -> None:
        self.failures[exchange] = iter(errors)

    async def publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: Properties) -> None:
        self.attempts += 1
        error = next(self.failures.get(exchange, iter(())), None)
        if error is not None:
            raise error
        self.sent.append((exchange, routing_key, properties))


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
    root: Path = write_config(topology="exchanges: [{name: orders}]\n")
    from router.config import load_config  # noqa: PLC0415

    settler = Settler(Publisher(channels, sleep), Metrics(), clock=lambda: NOW)
    return Harness(channels, settler, sleeps, load_config(root))


ENVELOPE = Envelope(b"{}", Properties(message_id="m-1", type="T", user_id="svc",
                                      headers={"x-mcp-reason": "forged"}),
                    exchange="mcp.ingress", routing_key="T")
FORWARD = Forward(Decoded("T", None, {}), (Copy("r1", "orders", "a"), Copy("r2", "audit", "b")))
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


async def test_every_copy_confirmed_means_ack(harness: Harness) -> None:
    """Both copies published on the first attempt: ack, no sleeps."""
    verdict = await harness.settler.settle(FORWARD, ENVELOPE, harness.config, TRACE)

    assert verdict is Verdict.ACK
    assert [(e, k) for e, k, _ in harness.channels.sent] == [("orders", "a"), ("audit", "b")]
    assert harness.sleeps == []


async def test_transient_failure_is_retried_with_backoff_then_succeeds(harness: Harness) -> None:
    """A nack then a timeout are retried after 50 ms and 100 ms; the third try lands."""
    harness.channels.fail("orders", TransientFailure("nack"), TransientFailure("timeout"))

    verdict = await harness.settler.settle(FORWARD, ENVELOPE, harness.config, TRACE)

    assert verdict is Verdict.ACK
    assert harness.sleeps == [0.05, 0.1]
    assert harness.channels.attempts == 4


async def test_transient_failure_that_persists_requeues(harness: Harness) -> None:
    """Three transient failures in a row leave the message for redelivery."""
    harness.channels.fail("orders", *[TransientFailure("lost")] * 3)

    verdict = await harness.settler.settle(FORWARD, ENVELOPE, harness.config, TRACE)

    assert verdict is Verdict.REQUEUE
    assert all(e != "mcp.dlx" for e, _, _ in harness.channels.sent)


async def test_unroutable_copy_is_dead_lettered_with_its_route_and_attempts(
        harness: Harness) -> None:
    """A copy returned three times is dead-lettered; the other copy still went out."""
    harness.channels.fail("audit", *[Unroutable("NO_ROUTE")] * 3)

    verdict = await harness.settler.settle(FORWARD, ENVELOPE, harness.config, TRACE)

    assert verdict is Verdict.ACK
    [(_, key, props)] = [s for s in harness.channels.sent if s[0] == "mcp.dlx"]
    assert key == "unroutable.T"
    assert props.headers["x-mcp-route"] == "r2"
    assert props.headers["x-mcp-attempts"] == 3
    assert "NO_ROUTE" in props.headers["x-mcp-error"]
    assert props.headers["x-mcp-dead-lettered-at"] == "2026-11-24T12:00:00.000Z"
    assert props.user_id is None
    assert props.headers["x-mcp-publisher"] == "svc"
    assert ("orders", "a") in [(e, k) for e, k, _ in harness.channels.sent]


async def test_dead_letter_that_cannot_be_published_requeues(harness: Harness) -> None:
    """If even the dead letter is not confirmed, the message is not acked."""
    harness.channels.fail("mcp.dlx", *[TransientFailure("blocked")] * 3)
    dead = DeadLetter(Reason.MALFORMED, "not JSON", "T")

    verdict = await harness.settler.settle(dead, ENVELOPE, harness.config, TRACE)

    assert verdict is Verdict.REQUEUE


async def test_input_dead_letter_counts_the_delivery_attempt(harness: Harness) -> None:
    """A redelivered bad message (x-delivery-count 2) is dead-lettered with attempts 3."""
    envelope = Envelope(b"x", Properties(message_id="m", headers={"x-delivery-count": 2}))
    dead = DeadLetter(Reason.MALFORMED, "not JSON", None)

    verdict = await harness.settler.settle(dead, envelope, harness.config, TRACE)

    assert verdict is Verdict.ACK
    [(_, key, props)] = harness.channels.sent
    assert key == "malformed.unknown"
    assert props.headers["x-mcp-attempts"] == 3
    assert "x-delivery-count" not in props.headers
