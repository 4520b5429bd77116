"""CloudEvents in (binary with every prefix, structured) and out (a route's format)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings import amqp, rabbitmq
from cloudevents.core.v1.event import CloudEvent

from router.config.configuration import Config, load_config
from router.config.keys import load_keys, rotate, unwrap
from router.core.envelope import Envelope, Properties
from router.core.eventform import present
from router.core.fieldcrypt import is_sealed
from router.core.outcome import DeadLetter, Forward, Reason
from router.core.sealing import Sealer, prepare
from tests.unit.conftest import WriteConfig
from tests.unit.test_sensitive import SCHEMAS

KEK = b"\x05" * 32
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
TOPOLOGY: dict[str, Any] = {
    "cloudevents": {"source": "/shop/router", "types": {"com.shop.paid": "Paid"}},
    "exchanges": [{"name": "out", "type": "topic"}],
    "routes": [
        {"name": "all", "message_type": "Paid", "to": [{"exchange": "out", "routing_key": "a"}]},
        {"name": "from-web", "message_type": "Paid", "when": "event.source == '/web'",
         "format": "cloudevents-binary", "to": [{"exchange": "out", "routing_key": "web"}]},
        {"name": "big", "message_type": "Paid", "when": "message.total > 100",
         "format": "cloudevents-structured", "to": [{"exchange": "out", "routing_key": "big"}]},
        {"name": "books", "message_type": "Paid",
         "to": [{"exchange": "out", "routing_key": "books"}]},
    ],
}
DATA = {"order_id": "o-1", "customer": {"email": "ada@example.com", "name": "Ada"},
        "total": 500}


@pytest.fixture
def shop(write_config: WriteConfig) -> tuple[Config, Sealer]:
    """Paid (e-mail sensitive), a mapped CloudEvents type, routes of every format; the
    'books' route is entitled to plain values."""
    root: Path = write_config(topology=TOPOLOGY, schemas=SCHEMAS, policies={"enc.yaml": {
        "encryption": {"key": "pii", "plain": [{"route": "books"}]}}})
    rotate(root / "keys", "pii", KEK, NOW)
    config = load_config(root)
    counter = itertools.count()
    keyring = unwrap(load_keys(root / "keys")[0], KEK, "pii")
    return config, Sealer(keyring, lambda n: next(counter).to_bytes(n, "big"))


def event(**attributes: Any) -> CloudEvent:
    return CloudEvent({"type": "com.shop.paid", "source": "/web", "id": "ev-1",
                       "time": NOW, "datacontenttype": "application/json", **attributes}, DATA)


def binary(message: CloudEvent) -> Envelope:
    written = rabbitmq.to_binary_event(message)
    return Envelope(written.body, Properties(content_type=written.content_type,
                                             headers=written.headers), "ingress", "x")


def structured(message: CloudEvent) -> Envelope:
    written = rabbitmq.to_structured_event(message)
    return Envelope(written.body, Properties(content_type=written.content_type), "ingress")


def amqp_binary(message: CloudEvent, colon: bool = False) -> Envelope:
    written = amqp.to_binary_event(message)
    headers = {(k.replace("cloudEvents_", "cloudEvents:") if colon else k): v
               for k, v in written.application_properties.items()}
    return Envelope(written.application_data,
                    Properties(content_type=written.properties["content-type"],
                               headers=headers), "ingress")


def routes(outcome: Any) -> dict[str, Any]:
    assert isinstance(outcome, Forward), outcome
    return {c.route: c for c in outcome.copies}


@pytest.mark.parametrize("make", [binary, structured, amqp_binary,
                                  lambda e: amqp_binary(e, colon=True)],
                         ids=["ce-", "structured", "cloudEvents_", "cloudEvents:"])
def test_an_event_in_any_mode_is_validated_and_routed(shop: tuple[Config, Sealer],
                                                      make: Any) -> None:
    """The mapped type, id, data and attributes reach validation and CEL in every mode."""
    config, sealer = shop
    prepared = prepare(make(event()), config, None, sealer)
    copies = routes(prepared.outcome)
    assert set(copies) == {"all", "from-web", "big", "books"}
    assert isinstance(prepared.outcome, Forward)
    assert prepared.outcome.message.message_type == "Paid"
    assert prepared.envelope.properties.type == "Paid"
    assert prepared.envelope.properties.message_id == "ev-1"


def test_cel_sees_attributes_and_data(shop: tuple[Config, Sealer]) -> None:
    """Another source and a small total leave out the routes that ask for them."""
    config, sealer = shop
    small = CloudEvent({"type": "com.shop.paid", "source": "/app", "id": "ev-2"},
                       {**DATA, "total": 5})
    assert set(routes(prepare(binary(small), config, None, sealer).outcome)) == {"all", "books"}


def test_a_broken_event_is_malformed() -> None:
    """A binary event without its required id is dead-lettered as malformed, not crashed."""
    from router.config.cloudevents_spec import CloudEventsSpec  # noqa: PLC0415
    from router.core.cloudevent import ingest  # noqa: PLC0415

    envelope = Envelope(b"{}", Properties(content_type="application/json", headers={
        "ce-specversion": "1.0", "ce-type": "t", "ce-source": "/s"}))
    dead = ingest(envelope, CloudEventsSpec())
    assert isinstance(dead, DeadLetter)
    assert dead.reason is Reason.MALFORMED
    assert "not a valid CloudEvent" in dead.error


def test_the_schema_version_comes_from_dataschema(shop: tuple[Config, Sealer]) -> None:
    """dataschema ending in v1.json selects version 1; v9 is schema_invalid."""
    config, sealer = shop
    ok = prepare(binary(event(dataschema="https://x/schemas/Paid/v1.json")), config, None,
                 sealer)
    assert isinstance(ok.outcome, Forward)
    assert ok.outcome.message.version == 1
    bad = prepare(binary(event(dataschema="https://x/Paid/v9")), config, None, sealer).outcome
    assert isinstance(bad, DeadLetter)
    assert bad.reason is Reason.SCHEMA_INVALID


def test_copies_are_sealed_unless_entitled(shop: tuple[Config, Sealer]) -> None:
    """Every copy but the entitled one carries the e-mail sealed; so does the dead letter."""
    config, sealer = shop
    prepared = prepare(binary(event()), config, None, sealer)
    copies = routes(prepared.outcome)
    assert copies["books"].body is None  # as published: plain
    sealed = orjson.loads(copies["all"].body)
    assert is_sealed(sealed["customer"]["email"])
    assert sealed["customer"]["name"] == "Ada"
    assert prepared.envelope.dead_body is not None
    assert b"ada@example.com" not in prepared.envelope.dead_body


def test_formats_are_read_back_by_the_sdk(shop: tuple[Config, Sealer]) -> None:
    """A binary and a structured copy parse with the cloudevents bindings, with the trace
    context, the original attributes and the sealed data."""
    config, sealer = shop
    prepared = prepare(structured(event(subject="s-1")), config, None, sealer)
    copies = routes(prepared.outcome)
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    for name, read in (("from-web", rabbitmq.from_binary_event),
                       ("big", rabbitmq.from_structured_event)):
        body, props = present(copies[name].form, copies[name].body,
                              Properties(headers=trace, type="Paid"), NOW)
        got = read(rabbitmq.RabbitMQMessage({k: str(v) for k, v in props.headers.items()},
                                            props.content_type, body))
        assert (got.get_type(), got.get_source(), got.get_id()) == ("com.shop.paid", "/web",
                                                                    "ev-1")
        assert got.get_extension("traceparent") == trace["traceparent"]
        assert got.get_subject() == "s-1"
        data = got.get_data()
        assert isinstance(data, dict)
        assert is_sealed(data["customer"]["email"])


def test_a_plain_message_gets_attributes_filled_in(shop: tuple[Config, Sealer]) -> None:
    """A message published without CloudEvents is written as one with the mapped type, the
    configured source, its id, the send time and its schema."""
    config, sealer = shop
    plain = Envelope(orjson.dumps(DATA), Properties(type="Paid", message_id="m-7",
                                                    content_type="application/json"))
    copy = routes(prepare(plain, config, None, sealer).outcome)["big"]
    body, props = present(copy.form, copy.body, Properties(), NOW)
    got = rabbitmq.from_structured_event(rabbitmq.RabbitMQMessage({}, props.content_type,
                                                                  body))
    attributes = got.get_attributes()
    assert attributes["type"] == "com.shop.paid"
    assert attributes["source"] == "/shop/router"
    assert attributes["id"] == "m-7"
    assert attributes["time"] == NOW
    assert attributes["dataschema"] == "mcp://schemas/Paid/v1.json"


def test_shown_masks_sensitive_fields_for_journals_and_pages(
        shop: tuple[Config, Sealer]) -> None:
    """The one masking call hides the e-mail of a plain message and of a structured event."""
    from router.core.sealing import shown  # noqa: PLC0415

    config, _ = shop
    plain = Envelope(orjson.dumps(DATA), Properties(type="Paid"))
    assert orjson.loads(shown(plain, config))["customer"] == {"email": "***", "name": "Ada"}
    masked = shown(structured(event()), config)
    assert b"ada@example.com" not in masked
    assert orjson.loads(masked)["data"]["customer"]["email"] == "***"


def test_a_service_reads_a_structured_copy_as_the_router_does(
        shop: tuple[Config, Sealer]) -> None:
    """router.sdk dispatch reads a structured CloudEvent: the mapped type and the data."""
    from router.sdk.handlers import Dispatch, Reading, Registration, dispatch  # noqa: PLC0415

    config, sealer = shop

    async def handler(body: Any, ctx: Any) -> None:
        """Never called here."""

    decision = dispatch(structured(event()), {"Paid": Registration("Paid", handler)},
                        config.registry, "svc",
                        reading=Reading(sealer.keyring, config.topology.cloudevents))
    assert isinstance(decision, Dispatch)
    assert decision.message.body == DATA


def test_a_service_seals_what_it_dead_letters(shop: tuple[Config, Sealer]) -> None:
    """An entitled (plain) delivery a service gives up on is dead-lettered sealed, a
    structured event in structured mode."""
    from router.sdk.sealed import seal_envelope  # noqa: PLC0415

    config, sealer = shop
    plain = Envelope(orjson.dumps(DATA), Properties(type="Paid"))
    for envelope in (plain, structured(event())):
        sealed = seal_envelope(envelope, config.registry, sealer.keyring, sealer.nonces,
                               config.topology.cloudevents)
        assert b"ada@example.com" not in sealed.body
        assert sealed.properties == envelope.properties
    body = orjson.loads(seal_envelope(structured(event()), config.registry, sealer.keyring,
                                      sealer.nonces, config.topology.cloudevents).body)
    assert is_sealed(body["data"]["customer"]["email"])


def test_a_structured_event_is_read_as_the_router_reads_json() -> None:
    """Exact big integers in the data survive; a key given twice is malformed."""
    from router.config.cloudevents_spec import CloudEventsSpec  # noqa: PLC0415
    from router.core.cloudevent import ingest  # noqa: PLC0415

    head = b'{"specversion": "1.0", "type": "t", "source": "/s", "id": "1", '
    big = Envelope(head + b'"data": {"n": 123456789012345678901234567890}}',
                   Properties(content_type="application/cloudevents+json"))
    read = ingest(big, CloudEventsSpec())
    assert not isinstance(read, DeadLetter)
    assert read.message.body == b'{"n":123456789012345678901234567890}'
    twice = Envelope(head + b'"data": {"n": 1, "n": 2}}',
                     Properties(content_type="application/cloudevents+json"))
    dead = ingest(twice, CloudEventsSpec())
    assert isinstance(dead, DeadLetter)
    assert "twice" in dead.error


@pytest.mark.parametrize(("headers", "content_type", "body"), [
    ({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/", "ce-type": "t",
      "ce-time": "yesterday"}, "application/json", b"{}"),
    ({"ce-specversion": "0.1", "ce-id": "1", "ce-source": "/", "ce-type": "t"},
     "application/json", b"{}"),
    ({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/", "ce-type": "t",
      "ce-Bad_Name": "x"}, "application/json", b"{}"),
    ({"cloudEvents_specversion": "1.0", "cloudEvents_id": {"a": 1},
      "cloudEvents_source": "/", "cloudEvents_type": "t"}, "application/json", b"{}"),
    ({}, "application/cloudevents+json", b"[1, 2]"),
    ({}, "application/cloudevents+json", b"{" * 5000),
    ({}, "application/cloudevents+xml", b"<e/>"),
], ids=["bad-time", "old-spec", "bad-extension", "id-a-table", "not-an-object", "deep",
        "xml"])
def test_hostile_events_are_malformed_never_raised(headers: dict[str, Any], content_type: str,
                                                   body: bytes) -> None:
    """Whatever arrives as a CloudEvent, the result is a malformed dead letter, not a crash."""
    from router.config.cloudevents_spec import CloudEventsSpec  # noqa: PLC0415
    from router.core.cloudevent import ingest  # noqa: PLC0415

    dead = ingest(Envelope(body, Properties(content_type=content_type, headers=headers)),
                  CloudEventsSpec())
    assert isinstance(dead, DeadLetter)
    assert dead.reason is Reason.MALFORMED


def test_a_copy_of_an_event_without_time_gets_none_made_up(shop: tuple[Config, Sealer]) -> None:
    """time is optional and the occurrence's: a copy of an event without one carries none."""
    config, sealer = shop
    envelope = Envelope(orjson.dumps(DATA), Properties(content_type="application/json", headers={
        "ce-specversion": "1.0", "ce-id": "ev-9", "ce-source": "/web", "ce-type": "com.shop.paid"}))
    copies = routes(prepare(envelope, config, None, sealer).outcome)
    binary_body, binary_props = present(copies["from-web"].form, copies["from-web"].body,
                                        Properties(), NOW)
    assert "ce-time" not in binary_props.headers
    assert binary_body == copies["from-web"].body
    body, _ = present(copies["big"].form, copies["big"].body, Properties(), NOW)
    assert "time" not in orjson.loads(body)
