"""What the router parks in its own queues is sealed, and taken back open; a message at its
last delivery is dead-lettered sealed; a CloudEvent's own trace context parents the span."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry import trace

from router.config.configuration import Config, load_config
from router.config.keys import load_keys, rotate, unwrap
from router.core.envelope import Envelope, Properties
from router.core.fieldcrypt import (
    KeyMissing,
    Purpose,
    SealBroken,
    is_sealed,
    open_value,
    seal_value,
)
from router.core.ladder import WholeParked
from router.core.outcome import DeadLetter, Forward, Reason
from router.core.sealing import Sealer, last_delivery, parked_body, prepare
from router.core.sensitive import reopen, unseal
from router.observe.tracing import parent_of
from tests.unit.conftest import WriteConfig
from tests.unit.test_cloudevent import KEK, NOW, TOPOLOGY, binary, event, structured
from tests.unit.test_sensitive import SCHEMAS

EMAIL = b"ada@example.com"
DATA = {"order_id": "o-1", "customer": {"email": "ada@example.com", "name": "Ada"},
        "total": 500}
SHAPED = WholeParked("over the rate limit", "ingress", "x", None)
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@pytest.fixture
def shop(write_config: WriteConfig) -> tuple[Config, Sealer]:
    """Paid with a sensitive e-mail, four routes, 'books' entitled to plain values."""
    root: Path = write_config(topology=TOPOLOGY, schemas=SCHEMAS, policies={"enc.yaml": {
        "encryption": {"key": "pii", "plain": [{"route": "books"}]}}})
    rotate(root / "keys", "pii", KEK, NOW)
    counter = itertools.count(1)
    keyring = unwrap(load_keys(root / "keys")[0], KEK, "pii")
    return load_config(root), Sealer(keyring, lambda n: next(counter).to_bytes(n, "big"))


def plain(body: Any = DATA, **headers: Any) -> Envelope:
    return Envelope(orjson.dumps(body), Properties(type="Paid", message_id="m-1",
                                                   content_type="application/json",
                                                   headers=headers), "ingress", "x")


def test_a_value_sealed_as_parked_opens_only_where_asked(shop: tuple[Config, Sealer]) -> None:
    """A parked value opens as parked (and by default); a copy's value never opens as
    parked, so the router cannot take a publisher's seal for its own."""
    keyring = shop[1].keyring
    parked = seal_value("x", keyring, lambda n: b"\x01" * n, Purpose.PARKED)
    copy = seal_value("x", keyring, lambda n: b"\x02" * n)

    assert open_value(parked, keyring) == open_value(parked, keyring, (Purpose.PARKED,)) == "x"
    with pytest.raises(SealBroken):
        open_value(parked, keyring, (Purpose.COPY,))
    with pytest.raises(SealBroken):
        open_value(copy, keyring, (Purpose.PARKED,))


@pytest.mark.parametrize("make", [plain, lambda: binary(event()),
                                  lambda: structured(event())],
                         ids=["plain", "ce-binary", "ce-structured"])
def test_what_is_parked_has_every_sensitive_value_sealed(shop: tuple[Config, Sealer],
                                                         make: Any) -> None:
    """The parked body holds the e-mail sealed as parked, everything else as it was, in the
    message's content mode."""
    config, sealer = shop
    prepared = prepare(make(), config, None, sealer)
    body = parked_body(prepared.envelope, config, sealer)

    assert EMAIL not in body
    data = orjson.loads(body)
    data = data.get("data", data)  # a structured event: the data inside
    assert data["customer"]["name"] == "Ada"
    assert data["total"] == 500
    assert open_value(data["customer"]["email"], sealer.keyring, (Purpose.PARKED,)) == \
        "ada@example.com"


def test_a_message_without_sensitive_values_is_parked_byte_for_byte(
        shop: tuple[Config, Sealer]) -> None:
    """No marked value present (or an unmarked type): the body is parked untouched."""
    config, sealer = shop
    bare = plain({"order_id": "o-1", "total": 5})
    unknown = replace(plain(), properties=replace(plain().properties, type="Other"))

    assert parked_body(bare, config, sealer) == bare.body
    assert parked_body(unknown, config, sealer) == unknown.body


@pytest.mark.parametrize("make", [plain, lambda: binary(event()),
                                  lambda: structured(event())],
                         ids=["plain", "ce-binary", "ce-structured"])
def test_a_parked_message_taken_back_is_routed_as_first_delivered(
        shop: tuple[Config, Sealer], make: Any) -> None:
    """Back from shaping, the entitled route gets the plain e-mail, every other copy and the
    dead letter carry it sealed for copies (the SDK opens it)."""
    config, sealer = shop
    first = prepare(make(), config, None, sealer)
    parked = replace(first.envelope, body=parked_body(first.envelope, config, sealer))

    again = prepare(parked, config, SHAPED, sealer)

    assert isinstance(again.outcome, Forward)
    copies = {c.route: c for c in again.outcome.copies}
    books = again.envelope.body if copies["books"].body is None else copies["books"].body
    assert EMAIL in books
    sealed = orjson.loads(copies["all"].body or b"")
    assert is_sealed(sealed["customer"]["email"])
    assert open_value(sealed["customer"]["email"], sealer.keyring, (Purpose.COPY,)) == \
        "ada@example.com"
    assert again.envelope.dead_body is not None
    assert EMAIL not in again.envelope.dead_body


def test_a_publishers_seal_stays_sealed_through_parking(shop: tuple[Config, Sealer]) -> None:
    """A value the publisher sealed is not opened on the way back, even for 'books'."""
    config, sealer = shop
    own = seal_value("ada@example.com", sealer.keyring, lambda n: b"\x09" * n)
    message = plain({**DATA, "customer": {"email": own, "name": "Ada"}})
    parked = replace(message, body=parked_body(message, config, sealer))

    again = prepare(parked, config, SHAPED, sealer)

    assert parked.body == message.body  # nothing plain to seal
    assert isinstance(again.outcome, Forward)
    books = next(c for c in again.outcome.copies if c.route == "books")
    assert orjson.loads(books.body or again.envelope.body)["customer"]["email"] == own


def test_reopen_leaves_what_it_cannot_open(shop: tuple[Config, Sealer]) -> None:
    """Under a key the keyring lacks, or sealed for copies: kept sealed, never an error."""
    config, sealer = shop
    marks = config.registry.marks("Paid", None)
    foreign = {"$enc": "AES-256-GCM", "kid": "other.v1", "ct": "A" * 40}
    body = {**DATA, "customer": {"email": foreign, "name": "Ada"}}

    assert reopen(body, marks, sealer.keyring, Purpose.PARKED) == body
    with pytest.raises(KeyMissing, match=r"other\.v1"):
        unseal(body, marks, sealer.keyring)


def test_the_last_delivery_is_only_the_brokers_count() -> None:
    """x-delivery-count at the limit on a redelivery is the last; a first delivery's header
    (the publisher's) or a count below the limit is not."""
    at_limit = replace(plain(**{"x-delivery-count": 3}), redelivered=True)

    assert last_delivery(at_limit, 3) == 3
    assert last_delivery(replace(at_limit, redelivered=False), 3) is None
    assert last_delivery(at_limit, 4) is None
    assert last_delivery(replace(plain(**{"x-delivery-count": True}), redelivered=True),
                         1) is None


def test_a_sensitive_message_at_its_last_delivery_is_dead_lettered_sealed(
        shop: tuple[Config, Sealer]) -> None:
    """At the delivery limit the router dead-letters it itself, as delivery_limit, sealed;
    a type without sensitive fields is left to the queue's own dead-lettering."""
    config, sealer = shop
    limit = config.topology.ingress.delivery_limit
    last = replace(plain(**{"x-delivery-count": limit}), redelivered=True)
    other = replace(last, properties=replace(last.properties, type="Other"))

    prepared = prepare(last, config, None, sealer)

    assert isinstance(prepared.outcome, DeadLetter)
    assert prepared.outcome.reason is Reason.DELIVERY_LIMIT
    assert prepared.envelope.dead_body is not None
    assert EMAIL not in prepared.envelope.dead_body
    assert prepared.outcome.message_type == "Paid"
    untouched = prepare(other, config, None, sealer).outcome
    assert not isinstance(untouched, DeadLetter) or untouched.reason is not Reason.DELIVERY_LIMIT


def _parent_trace(envelope: Envelope) -> str | None:
    context = trace.get_current_span(parent_of(envelope)).get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@pytest.mark.parametrize("key", ["ce-traceparent", "Ce-Traceparent", "cloudEvents_traceparent",
                                 "cloudEvents:traceparent"])
def test_a_binary_events_traceparent_is_the_parent(key: str) -> None:
    """Without an AMQP traceparent, the event's distributed-tracing extension is used."""
    message = plain(**{key: TRACEPARENT})
    headers: dict[Any, Any] = {**message.properties.headers, 1: "x"}  # other clients' keys
    assert _parent_trace(replace(message, properties=replace(message.properties,
                                                             headers=headers))) == TRACE_ID


def test_a_structured_events_traceparent_is_the_parent() -> None:
    """In structured mode the event's own traceparent attribute is the parent."""
    written = structured(event(traceparent=TRACEPARENT))

    assert _parent_trace(written) == TRACE_ID


def test_the_amqp_traceparent_wins_and_garbage_starts_a_trace() -> None:
    """The AMQP header first; an unusable event traceparent is ignored, not an error."""
    other = "00-11111111111111111111111111111111-b7ad6b7169203331-01"

    assert _parent_trace(plain(traceparent=other, **{"ce-traceparent": TRACEPARENT})) == \
        "11111111111111111111111111111111"
    assert _parent_trace(plain(**{"ce-traceparent": "garbage"})) is None
    not_json = Envelope(b"{", Properties(content_type="application/cloudevents+json"))
    assert _parent_trace(not_json) is None
