"""CloudEvents against the real broker: events published by the ``cloudevents`` SDK in each
mode are validated, routed on an attribute and on data, and read back by the SDK."""

from __future__ import annotations

from typing import Any

import aio_pika
import pytest
from cloudevents.core.bindings import amqp, rabbitmq
from cloudevents.core.v1.event import CloudEvent

from tests.integration.conftest import Broker, ConfigDir, order_created

CE_TYPE = "com.shop.order.created"


@pytest.fixture
def events(config_dir: ConfigDir) -> ConfigDir:
    """The example shop plus CloudEvents routes: from /web in binary mode, big orders in
    structured mode, both to <prefix>.events."""
    p = config_dir.prefix
    topology = config_dir.topology
    topology["cloudevents"] = {"source": "/shop/router", "types": {CE_TYPE: "OrderCreated"}}
    topology["exchanges"].append({"name": f"{p}.events", "type": "topic"})
    topology["queues"] += [{"name": f"{p}.ev-web", "type": "classic"},
                           {"name": f"{p}.ev-big", "type": "classic"}]
    topology["bindings"] += [
        {"exchange": f"{p}.events", "queue": f"{p}.ev-web", "routing_key": "web"},
        {"exchange": f"{p}.events", "queue": f"{p}.ev-big", "routing_key": "big"}]
    topology["routes"] += [
        {"name": "from-web", "message_type": "OrderCreated", "when": "event.source == '/web'",
         "format": "cloudevents-binary", "to": [{"exchange": f"{p}.events",
                                                 "routing_key": "web"}]},
        {"name": "big-events", "message_type": "OrderCreated",
         "when": "message.total_amount > 1000.0", "format": "cloudevents-structured",
         "to": [{"exchange": f"{p}.events", "routing_key": "big"}]}]
    config_dir.write(topology)
    return config_dir


def _event(event_id: str, source: str, total: float) -> CloudEvent:
    return CloudEvent({"type": CE_TYPE, "source": source, "id": event_id,
                       "datacontenttype": "application/json", "subject": f"order/{event_id}"},
                      order_created(total))


async def _publish(broker: Broker, exchange: str, written: Any) -> None:
    if isinstance(written, amqp.AMQPMessage):  # the AMQP binding: application properties
        await broker.publish(exchange, written.application_data,
                             content_type=written.properties.get("content-type"),
                             headers=dict(written.application_properties))
    else:
        await broker.publish(exchange, written.body, content_type=written.content_type,
                             headers=dict(written.headers))


def _read(message: aio_pika.abc.AbstractIncomingMessage) -> Any:
    """What the SDK's RabbitMQ binding reads from a delivered copy."""
    headers = {k: v.decode() if isinstance(v, bytes) else str(v)
               for k, v in (message.headers or {}).items()}
    return rabbitmq.from_rabbitmq_event(
        rabbitmq.RabbitMQMessage(headers, message.content_type, message.body))


async def test_events_in_each_mode_are_routed_and_read_back(
        broker: Broker, events: ConfigDir, start_router: Any) -> None:
    """Binary (ce-), structured and AMQP-binding (cloudEvents_) events: CEL on the source and
    on data picks the routes; each CloudEvents copy parses with the SDK, with its trace."""
    await start_router(events)
    big_web = _event("e-1", "/web", 2000.0)
    small_app = _event("e-2", "/app", 10.0)
    small_web = _event("e-3", "/web", 5.0)
    await _publish(broker, events.ingress, rabbitmq.to_binary_event(big_web))
    await _publish(broker, events.ingress, rabbitmq.to_structured_event(small_app))
    await _publish(broker, events.ingress, amqp.to_binary_event(small_web))

    web = [_read(m) for m in await broker.take(events.name("ev-web"), 2)]
    [big] = [_read(m) for m in await broker.take(events.name("ev-big"), 1)]
    billing = await broker.take(events.name("billing"), 3)

    assert sorted(e.get_id() for e in web) == ["e-1", "e-3"]
    assert big.get_id() == "e-1"
    received = (*sorted(web, key=lambda e: e.get_id()), big)
    for got, sent in zip(received, (big_web, small_web, big_web), strict=True):
        assert (got.get_type(), got.get_source()) == (CE_TYPE, "/web")
        assert got.get_subject() == sent.get_subject()
        assert got.get_data() == sent.get_data()
        assert str(got.get_extension("traceparent")).startswith("00-")
    assert sorted(m.message_id or "" for m in billing) == ["e-1", "e-2", "e-3"]
    assert {m.headers["x-mcp-route"] for m in billing} == {"order-created"}


async def test_a_plain_message_becomes_an_event_on_a_cloudevents_route(
        broker: Broker, events: ConfigDir, start_router: Any) -> None:
    """A plain JSON message on a structured route gets source, id, time, type and
    datacontenttype filled in."""
    await start_router(events)
    body = order_created(5000.0)
    await broker.publish(events.ingress, body, type="OrderCreated", message_id="plain-1",
                         content_type="application/json")

    [copy] = await broker.take(events.name("ev-big"), 1)
    event = _read(copy)
    attributes = event.get_attributes()
    assert copy.content_type == "application/cloudevents+json"
    assert (attributes["id"], attributes["source"], attributes["type"]) == (
        "plain-1", "/shop/router", CE_TYPE)
    assert attributes["datacontenttype"] == "application/json"
    assert attributes["time"] is not None
    assert event.get_data() == body


async def test_a_broken_event_is_dead_lettered_as_malformed(
        broker: Broker, events: ConfigDir, start_router: Any) -> None:
    """A structured event without an id is refused, naming what is missing."""
    await start_router(events)
    await broker.publish(events.ingress, b'{"specversion": "1.0", "type": "t", "source": "/"}',
                         content_type="application/cloudevents+json")
    [dead] = await broker.take(events.dead_queue, 1)
    assert dead.headers["x-mcp-reason"] == "malformed"
    assert "missing required attribute(s): id" in str(dead.headers["x-mcp-error"])
