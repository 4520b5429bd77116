"""Traces exported through OTLP to a real receiver in the test, decoded and checked:
span kinds, parents, links and the messaging conventions' attribute names."""

from __future__ import annotations

import asyncio
import json
import signal

import aio_pika

from router.observe.otelmetrics import start_metrics_export
from router.observe.telemetry import Telemetry, TelemetrySettings
from router.sdk import Context, Service, ServicePublisher
from tests.integration.conftest import (
    AMQP_URL,
    Broker,
    ConfigDir,
    apply,
    order_created,
    wait_until,
)
from tests.integration.otlp import GrpcReceiver, Receiver

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def _telemetry(receiver: Receiver, service: str = "mcp-router", **settings: object) -> Telemetry:
    return Telemetry.start(TelemetrySettings(service_name=service, exporter="otlp",
                                             endpoint=receiver.url, **settings))  # type: ignore[arg-type]


async def _flushed(telemetry: Telemetry, receiver: Receiver, count: int) -> None:
    async def enough() -> bool:
        await asyncio.to_thread(telemetry.flush)
        return len(receiver.spans) >= count

    await wait_until(enough, timeout=15, interval=0.1)


async def test_delivery_is_a_consumer_span_and_each_copy_a_producer_span(
        broker: Broker, config_dir: ConfigDir, start_router, receiver: Receiver) -> None:
    """process (CONSUMER, child of the publisher) -> publish per copy (PRODUCER); each copy
    carries its producer span as parent; names and attributes as the conventions spell them."""
    telemetry = _telemetry(receiver)
    await start_router(config_dir, tracer=telemetry.tracer)
    await broker.publish(config_dir.ingress, order_created(2000.0), type="OrderCreated",
                         message_id="traced-1", routing_key="OrderCreated",
                         headers={"traceparent": TRACEPARENT})

    [billing] = await broker.take(config_dir.name("billing"), 1)
    [review] = await broker.take(config_dir.name("review"), 1)
    await _flushed(telemetry, receiver, 3)

    [process] = receiver.named("process ")
    producers = {s.attributes["mcp.router.route"]: s for s in receiver.named("publish ")}
    assert process.name == f"process {config_dir.ingress}"
    assert (process.kind, process.trace_id, process.parent_id) == ("CONSUMER", TRACE_ID, PARENT_ID)
    assert process.attributes["messaging.system"] == "rabbitmq"
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.destination.name"] == config_dir.ingress
    assert process.attributes["messaging.rabbitmq.destination.routing_key"] == "OrderCreated"
    assert process.attributes["messaging.message.id"] == "traced-1"
    assert isinstance(process.attributes["messaging.rabbitmq.message.delivery_tag"], int)
    assert ("settle", {"messaging.operation.type": "settle", "messaging.operation.name": "ack",
                       "mcp.router.outcome": "routed"}) in process.events
    assert set(producers) == {"order-created", "big-orders"}
    for route, copy in (("order-created", billing), ("big-orders", review)):
        span = producers[route]
        assert (span.kind, span.trace_id, span.parent_id) == ("PRODUCER", TRACE_ID,
                                                              process.span_id)
        assert span.name == f"publish {config_dir.name('orders')}"
        assert span.attributes["messaging.operation.type"] == "send"
        assert span.attributes["messaging.destination.name"] == config_dir.name("orders")
        assert copy.headers["traceparent"] == f"00-{TRACE_ID}-{span.span_id}-01"


async def test_validation_failure_is_an_event_and_the_dead_letter_a_span(
        broker: Broker, config_dir: ConfigDir, start_router, receiver: Receiver) -> None:
    """A schema violation is an exception event with the pointer; the dead letter is a
    PRODUCER span naming its reason; the delivery is still settled with an ack."""
    telemetry = _telemetry(receiver)
    await start_router(config_dir, tracer=telemetry.tracer)
    await broker.publish(config_dir.ingress, {"order_id": "nope"}, type="OrderCreated",
                         headers={"traceparent": TRACEPARENT})

    await broker.take(config_dir.dead_queue, 1)
    await _flushed(telemetry, receiver, 2)

    [process] = receiver.named("process ")
    [dead] = receiver.named("publish ", **{"mcp.router.dead_letter.reason": "schema_invalid"})
    [(_, exception)] = [e for e in process.events if e[0] == "exception"]
    assert exception["exception.type"] == "schema_invalid"
    assert "/order_id: format" in exception["exception.message"]
    assert process.attributes["error.type"] == "schema_invalid"
    assert process.status_code == 2
    assert ("settle", {"messaging.operation.type": "settle", "messaging.operation.name": "ack",
                       "mcp.router.outcome": "dead_lettered"}) in process.events
    assert dead.parent_id == process.span_id
    assert dead.attributes["messaging.destination.name"] == config_dir.topology[
        "dead_letter"]["exchange"]


async def test_a_retried_copy_links_back_to_its_first_attempt(
        broker: Broker, config_dir: ConfigDir, start_router, receiver: Receiver) -> None:
    """The delivery of a parked copy continues its parking span and links to the process
    span of the first attempt, all in the publisher's trace."""
    telemetry = _telemetry(receiver)
    await start_router(config_dir, tracer=telemetry.tracer)
    await broker.publish(config_dir.ingress, {"order_id": "6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11",
                                              "status": "paid"},
                         type="OrderUpdated", headers={"traceparent": TRACEPARENT})

    await broker.take(config_dir.dead_queue, 1, timeout=15)  # 2 rounds, then unroutable
    await _flushed(telemetry, receiver, 3 * 2 + 1)

    first, *later = sorted(receiver.named("process "), key=lambda s: len(s.links))
    parks = receiver.named("publish ", **{"messaging.destination.name": ""})
    assert len(later) == 2
    assert {s.trace_id for s in receiver.spans} == {TRACE_ID}
    assert first.links == []
    for span in later:
        assert [(t, s) for t, s, _ in span.links] == [(TRACE_ID, first.span_id)]
        assert span.parent_id in {p.span_id for p in parks}
    assert {p.attributes["mcp.router.retry.round"] for p in parks} == {1, 2}


async def test_three_services_one_trace(broker: Broker, config_dir: ConfigDir, start_router,
                                        receiver: Receiver) -> None:
    """shop publishes, the router routes, billing handles: one trace id, parent to child."""
    router_telemetry = _telemetry(receiver, "mcp-router")
    shop_telemetry = _telemetry(receiver, "shop")
    billing_telemetry = _telemetry(receiver, "billing")
    await start_router(config_dir, tracer=router_telemetry.tracer)
    handled: list[str] = []
    billing = Service("billing", queue=config_dir.name("billing"),
                      tracer=billing_telemetry.tracer, control_exchange=config_dir.name("control"),
                      dead_letter_exchange=str(config_dir.topology["dead_letter"]["exchange"]))
    config_dir.extra_queues.extend(billing.retry_queues(billing.queue))

    @billing.handler("OrderCreated")
    async def on_created(body: dict[str, object], ctx: Context) -> None:
        handled.append(str(body["order_id"]))

    connection = await aio_pika.connect(AMQP_URL)
    try:
        async with billing.running(connection):
            shop = await ServicePublisher.open(connection, config_dir.ingress,
                                               shop_telemetry.tracer)
            order = order_created()
            await shop.publish("OrderCreated", order, version=2)

            async def done() -> bool:
                return bool(handled)

            await wait_until(done, timeout=10)
        channel = await connection.channel()
        await channel.exchange_delete(config_dir.name("control"))
    finally:
        await connection.close()
    for t in (shop_telemetry, billing_telemetry):
        t.flush()
    await _flushed(router_telemetry, receiver, 4)

    by_service = {s.service: s for s in receiver.spans if s.service != "mcp-router"}
    [router_process] = [s for s in receiver.spans if s.service == "mcp-router"
                        and s.kind == "CONSUMER"]
    [router_publish] = [s for s in receiver.spans if s.service == "mcp-router"
                        and s.kind == "PRODUCER"]
    shop_span, billing_span = by_service["shop"], by_service["billing"]
    assert handled == [order["order_id"]]
    assert len({shop_span.trace_id, router_process.trace_id, router_publish.trace_id,
                billing_span.trace_id}) == 1
    assert shop_span.kind == "PRODUCER"
    assert router_process.parent_id == shop_span.span_id
    assert router_publish.parent_id == router_process.span_id
    assert (billing_span.kind, billing_span.parent_id) == ("CONSUMER", router_publish.span_id)


async def test_sampled_out_traces_export_nothing_but_still_propagate(
        broker: Broker, config_dir: ConfigDir, start_router, receiver: Receiver) -> None:
    """With the sampler off nothing is exported, and copies still carry the trace id."""
    telemetry = _telemetry(receiver, sampler="always_off")
    await start_router(config_dir, tracer=telemetry.tracer)
    await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                         headers={"traceparent": TRACEPARENT})

    [copy] = await broker.take(config_dir.name("billing"), 1)
    telemetry.flush()

    assert receiver.spans == []
    assert copy.headers["traceparent"].split("-")[1] == TRACE_ID


async def test_metrics_are_exported_through_otlp_too(
        broker: Broker, config_dir: ConfigDir, start_router, receiver: Receiver) -> None:
    """Counters, gauges and histograms reach an OTLP receiver under the /metrics names."""
    router = await start_router(config_dir)
    settings = TelemetrySettings(metrics_endpoint=receiver.metrics_url, metrics_interval_ms=100)
    stop = start_metrics_export(router.service.metrics, settings)
    try:
        shop = await ServicePublisher.open(broker.connection, config_dir.ingress)
        await shop.publish("OrderCreated", order_created(), version=2)
        await broker.take(config_dir.name("billing"), 1)

        async def exported() -> bool:
            return {"mcp_router_messages", "mcp_router_processing_seconds",
                    "mcp_router_message_age_seconds", "mcp_router_broker_connected"} \
                <= set(receiver.metrics)

        await wait_until(exported, timeout=10)
    finally:
        await asyncio.to_thread(stop)

    routed = [p for p in receiver.metrics["mcp_router_messages"]
              if {a.key: a.value.string_value for a in p.attributes}.get("outcome") == "routed"]
    assert routed[-1].as_double == 1.0
    assert receiver.metrics["mcp_router_processing_seconds"][-1].count >= 1
    assert receiver.metrics["mcp_router_message_age_seconds"][-1].count >= 1


async def test_spans_are_exported_over_grpc_too(broker: Broker, config_dir: ConfigDir,
                                                start_router) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc sends the same spans to a gRPC collector."""
    grpc_receiver = GrpcReceiver().start()
    try:
        settings = TelemetrySettings.from_env({
            "OTEL_EXPORTER_OTLP_ENDPOINT": grpc_receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
        telemetry = Telemetry.start(settings)
        await start_router(config_dir, tracer=telemetry.tracer)
        await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                             headers={"traceparent": TRACEPARENT})
        await broker.take(config_dir.name("billing"), 1)
        await _flushed(telemetry, grpc_receiver.collected, 2)
    finally:
        grpc_receiver.stop()

    kinds = sorted(s.kind for s in grpc_receiver.collected.spans)
    assert kinds == ["CONSUMER", "PRODUCER"]
    assert {s.trace_id for s in grpc_receiver.collected.spans} == {TRACE_ID}


async def test_json_log_lines_carry_the_message_context(broker: Broker, config_dir: ConfigDir,
                                                        router_process) -> None:
    """With MCP_LOG_FORMAT=json, the dead-letter log line names message, type and trace."""
    await apply(config_dir)
    router = router_process(config_dir, env={"MCP_LOG_FORMAT": "json"})
    await broker.publish(config_dir.ingress, b"not json", type="OrderCreated",
                         message_id="logged-1", headers={"traceparent": TRACEPARENT})
    await broker.take(config_dir.dead_queue, 1, timeout=20)
    router.proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(router.proc.wait, 30)

    lines = [json.loads(line) for line in router.output().splitlines() if line.startswith("{")]
    [dead] = [x for x in lines if x.get("message_id") == "logged-1"]

    assert dead["message"].startswith("dead-lettered (malformed)")
    assert (dead["type"], dead["trace_id"], dead["reason"]) == ("OrderCreated", TRACE_ID,
                                                                "malformed")
    assert dead["level"] == "info"
