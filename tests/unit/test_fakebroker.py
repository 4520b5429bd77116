"""The in-memory broker of the behaviour suite answers as RabbitMQ does."""

from __future__ import annotations

import pytest

from router.config.configuration import load_config
from router.core.deliverysteps import Verdict
from router.core.envelope import Properties
from router.errors import Refused, Unroutable
from router.testing.fakebroker import FakeBroker, topic_matches
from tests.unit.conftest import WriteConfig


@pytest.mark.parametrize(("pattern", "key", "matches"), [
    ("order.*", "order.new", True), ("order.*", "order.new.x", False),
    ("#", "", True), ("order.#", "order", True), ("*.new", "order.new", True),
    ("a.#.z", "a.b.c.z", True), ("a.#.z", "a.z.y", False)])
def test_topic_patterns_match_as_amqp_says(pattern: str, key: str, matches: bool) -> None:
    """``*`` is one word, ``#`` zero or more."""
    assert topic_matches(pattern, key) is matches


async def test_publishes_are_confirmed_returned_or_failed_as_scripted(
        write_config: WriteConfig) -> None:
    """A bound key lands; an unbound one or a missing exchange is returned; scripts fail."""
    broker = FakeBroker.of(load_config(write_config()))
    props = Properties(message_id="m")

    await broker.publish("orders", "a.b", b"{}", props)
    with pytest.raises(Unroutable):
        await broker.publish("nowhere", "a", b"{}", props)
    broker.fail("orders", Refused("nack"))
    with pytest.raises(Refused):
        await broker.publish("orders", "a.b", b"{}", props)

    assert len(broker.messages("billing")) == 1


async def test_a_requeued_delivery_comes_back_first_and_redelivered(
        write_config: WriteConfig) -> None:
    """Requeue puts the message back at the head, marked redelivered; ack removes it."""
    broker = FakeBroker.of(load_config(write_config()))
    await broker.publish("orders", "x", b"1", Properties(message_id="1"))
    await broker.publish("orders", "x", b"2", Properties(message_id="2"))

    first = broker.take("billing")
    assert first is not None
    broker.settle(first, Verdict.REQUEUE)
    again = broker.take("billing")

    assert again is not None
    assert (again.envelope.body, again.envelope.redelivered) == (b"1", True)
    broker.settle(again, Verdict.ACK)
    assert [m.body for m in broker.messages("billing")] == [b"2"]
