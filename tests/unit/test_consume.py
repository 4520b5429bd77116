"""The acker settles deliveries in order: requeues and rejects go before a multiple ack."""

from __future__ import annotations

from dataclasses import dataclass, field

from router.broker.consume import Acker
from router.broker.settle import Verdict


@dataclass
class RecordingChannel:
    """Records the settlement frames an ``Acker`` sends."""

    sent: list[tuple[str, int, bool]] = field(default_factory=list)

    async def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.sent.append(("ack", tag, multiple))

    async def basic_nack(self, tag: int, multiple: bool = False, requeue: bool = True) -> None:
        self.sent.append(("nack", tag, multiple))

    async def basic_reject(self, tag: int, requeue: bool = True) -> None:
        assert requeue is False
        self.sent.append(("reject", tag, False))


async def test_a_rejected_delivery_is_rejected_before_the_multiple_ack_covers_it() -> None:
    """A delivery whose dead letter could not be encoded is rejected, not acked with the rest."""
    channel = RecordingChannel()
    acker = Acker(channel)  # type: ignore[arg-type]
    for tag in (1, 2, 3):
        acker.started(tag)
    acker.finished(1, Verdict.ACK)
    acker.finished(2, Verdict.REJECT)
    acker.finished(3, Verdict.ACK)

    await acker.flush()

    assert channel.sent == [("reject", 2, False), ("ack", 3, True)]
    assert acker.unsettled == 0


async def test_a_rejected_delivery_behind_a_slow_one_is_rejected_alone() -> None:
    """Out of order, a reject is sent on its own tag and the slow delivery stays unsettled."""
    channel = RecordingChannel()
    acker = Acker(channel)  # type: ignore[arg-type]
    for tag in (1, 2):
        acker.started(tag)
    acker.finished(2, Verdict.REJECT)

    await acker.flush()

    assert channel.sent == [("reject", 2, False)]
    assert acker.unsettled == 1
