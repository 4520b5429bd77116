"""A CloudEvent's own trace context (the distributed-tracing extension) parents the router's
span when the AMQP ``traceparent`` is absent: checked on spans a real OTLP receiver decoded."""

from __future__ import annotations

import asyncio
from typing import Any

from cloudevents.core.bindings import amqp, rabbitmq
from cloudevents.core.v1.event import CloudEvent

from router.observe.telemetry import Telemetry, TelemetrySettings
from tests.integration.conftest import Broker, ConfigDir, order_created, wait_until
from tests.integration.otlp import Receiver
from tests.integration.test_cloudevents import CE_TYPE, _publish
from tests.integration.test_cloudevents import events as events  # noqa: PLC0414 - a fixture

TRACES = {"binary": ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
          "structured": ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
          "amqp": ("11111111111111111111111111111111", "2222222222222222")}


def _event(mode: str) -> CloudEvent:
    trace_id, parent = TRACES[mode]
    return CloudEvent({"type": CE_TYPE, "source": "/app", "id": f"t-{mode}",
                       "datacontenttype": "application/json",
                       "traceparent": f"00-{trace_id}-{parent}-01"}, order_created(10.0))


async def test_the_events_traceparent_parents_the_process_span(
        broker: Broker, events: ConfigDir, start_router: Any, receiver: Receiver) -> None:
    """ce-traceparent (binary), traceparent in the JSON (structured) and cloudEvents_
    (AMQP binding), with no AMQP traceparent: each process span continues its event's
    trace, and the routed copy carries that trace on."""
    telemetry = Telemetry.start(TelemetrySettings(service_name="mcp-router", exporter="otlp",
                                                  endpoint=receiver.url))
    try:
        await start_router(events, tracer=telemetry.tracer)
        await _publish(broker, events.ingress, rabbitmq.to_binary_event(_event("binary")))
        await _publish(broker, events.ingress,
                       rabbitmq.to_structured_event(_event("structured")))
        await _publish(broker, events.ingress, amqp.to_binary_event(_event("amqp")))
        billing = await broker.take(events.name("billing"), 3)

        async def exported() -> bool:
            await asyncio.to_thread(telemetry.flush)
            return len(receiver.named("process ")) >= 3
        await wait_until(exported, timeout=15, interval=0.1)
    finally:
        telemetry.shutdown()

    processes = {(s.trace_id, s.parent_id) for s in receiver.named("process ")}
    assert processes == set(TRACES.values())
    assert {m.headers["traceparent"].split("-")[1] for m in billing} == \
        {trace_id for trace_id, _ in TRACES.values()}
