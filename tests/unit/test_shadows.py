"""Shadow copies on the side: sent once, never awaited by the real copies, counted."""

from __future__ import annotations

import asyncio

from opentelemetry.trace import INVALID_SPAN

from router.broker.shadows import ShadowSender
from router.core.envelope import Properties
from router.core.outcome import Copy
from router.errors import BrokerUnavailable, Refused, Unroutable
from router.observe.metrics import Metrics
from tests.unit.conftest import make_envelope


class Channels:
    """Records publishes; ``refuse`` maps an exchange to the error its publish raises,
    ``hold`` keeps publishes waiting until set."""

    def __init__(self, refuse: dict[str, Exception] | None = None,
                 hold: asyncio.Event | None = None) -> None:
        self.refuse, self.hold = refuse or {}, hold
        self.sent: list[tuple[str, str, Properties]] = []

    async def publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: Properties) -> None:
        if self.hold is not None:
            await self.hold.wait()
        if exchange in self.refuse:
            raise self.refuse[exchange]
        self.sent.append((exchange, routing_key, properties))

    async def wait_usable(self, within: float) -> bool:
        return True


def shadow(exchange: str, name: str) -> Copy:
    return Copy("r", exchange, "k", branch=name, shadow=True)


def sample(metrics: Metrics, **labels: str) -> float:
    return metrics.registry.get_sample_value("mcp_router_shadow_copies_total", labels) or 0.0


async def test_each_shadow_copy_is_sent_once_and_its_fate_counted() -> None:
    """A delivered, a returned and a refused shadow: one publish each, counted by branch."""
    channels = Channels({"gone": Unroutable("no queue"), "full": Refused("nack")})
    metrics = Metrics()
    sender = ShadowSender(lambda: _ready(channels), metrics)

    sender.send([shadow("ok", "a"), shadow("gone", "b"), shadow("full", "c")], (),
                make_envelope({}, type="T", message_id="m1"), {}, INVALID_SPAN)
    await sender.drain(1.0)

    assert [(e, p.headers["x-mcp-shadow"]) for e, _, p in channels.sent] == [("ok", True)]
    assert sample(metrics, route="r", branch="a", result="delivered") == 1
    assert sample(metrics, route="r", branch="b", result="failed") == 1
    assert sample(metrics, route="r", branch="c", result="failed") == 1


async def test_sending_never_waits_for_the_shadow() -> None:
    """``send`` returns at once while the shadow's publish still hangs."""
    hold = asyncio.Event()
    sender = ShadowSender(lambda: _ready(Channels(hold=hold)), Metrics())

    sender.send([shadow("slow", "a")], (), make_envelope({}, type="T"), {}, INVALID_SPAN)

    assert sender.in_flight == 1
    hold.set()
    await sender.drain(1.0)
    assert sender.in_flight == 0


async def test_too_many_shadows_in_flight_are_dropped_and_counted() -> None:
    """Past the limit a shadow copy is dropped, never queued without bound."""
    hold = asyncio.Event()
    metrics = Metrics()
    sender = ShadowSender(lambda: _ready(Channels(hold=hold)), metrics, limit=2)

    sender.send([shadow("x", "a")] * 3, (), make_envelope({}, type="T"), {}, INVALID_SPAN)
    hold.set()
    await sender.drain(1.0)

    assert sample(metrics, route="r", branch="a", result="delivered") == 2
    assert sample(metrics, route="r", branch="a", result="dropped") == 1


async def test_no_connection_for_shadows_counts_them_failed() -> None:
    """When the shadows' connection cannot be had, their copies fail quietly."""
    metrics = Metrics()

    async def unavailable() -> Channels:
        raise BrokerUnavailable("down")

    sender = ShadowSender(unavailable, metrics)
    sender.send([shadow("x", "a")], ((shadow("y", "b"), "no v2"),), make_envelope({}, type="T"),
                {}, INVALID_SPAN)
    await sender.drain(1.0)

    assert sample(metrics, route="r", branch="a", result="failed") == 1
    assert sample(metrics, route="r", branch="b", result="failed") == 1


async def _ready(channels: Channels) -> Channels:
    return channels
