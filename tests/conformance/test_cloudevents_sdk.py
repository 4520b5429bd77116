"""CloudEvents 1.0 with the official ``cloudevents`` SDK: every copy the router emits reads back.

A matrix of inputs (plain JSON messages; CloudEvents in binary mode with the
``ce-``, ``cloudEvents_`` and ``cloudEvents:`` header prefixes, and in
structured mode; with and without the optional attributes and extensions;
several data shapes, big integers and unicode among them) goes through the
router's own pure path as ``router.runtime.service`` runs it: ``prepare`` decides and
presents each copy, ``copy_properties`` gives it its properties with the trace
context of its producer span, ``present`` writes it as the route's format asks.
Each copy on the ``cloudevents-binary`` and ``cloudevents-structured`` route is
read back with the SDK's RabbitMQ binding (as ``tests/integration/
test_cloudevents.py`` reads delivered copies), and its required attributes,
``time``, ``datacontenttype``, ``dataschema``, extensions, data and
``traceparent`` are checked.  No broker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from cloudevents.core.bindings import amqp, rabbitmq
from cloudevents.core.v1.event import CloudEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.config.configuration import Config, load_config
from router.core.envelope import Envelope, Properties
from router.core.eventform import present
from router.core.outbound import copy_properties
from router.core.outcome import Copy, Forward
from router.core.sealing import prepare
from router.evolution.inlined import BASE_URI

SUITE = "CloudEvents 1.0 (cloudevents SDK reads every copy)"
CE_TYPE = "com.example.reading"
SOURCE = "/conformance/router"
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACESTATE = "congo=t61rcWkgMzE"
FORMATS = {"binary": "cloudevents-binary", "structured": "cloudevents-structured"}
TOPOLOGY: dict[str, Any] = {
    "cloudevents": {"source": SOURCE, "types": {CE_TYPE: "Reading"}},
    "exchanges": [{"name": "out", "type": "topic"}],
    "queues": [{"name": "sink", "type": "classic"}],
    "bindings": [{"exchange": "out", "queue": "sink", "routing_key": "#"}],
    "routes": [
        {"name": mode, "message_type": "Reading", "format": route_format,
         "to": [{"exchange": "out", "routing_key": mode}]}
        for mode, route_format in FORMATS.items()],
}
SCHEMA = {"type": "object", "required": ["sensor"], "properties": {"sensor": {"type": "string"}}}

DATA: dict[str, dict[str, Any]] = {
    "flat": {"sensor": "s-1", "value": 21.5, "ok": True, "note": None},
    "big-integers": {"sensor": "s-2", "count": 123456789012345678901234567890,
                     "negative": -(2**64) - 1, "max_int64": 2**63 - 1},
    "unicode": {"sensor": "Zürich-北京-🌡️", "note": "e\u0301 \u202eRTL\u202c \u2028 \"q\" \\ \t",
                "emoji": "👩‍👩‍👧"},
    "nested": {"sensor": "s-4", "series": [[1, 2.5e-8], [], [{"a": {"b": [None]}}]],
               "empty": {}, "float": 1.7976931348623157e308},
}

#: Optional attributes of an input event: none, the common ones, extensions too.
ATTRIBUTES: dict[str, dict[str, Any]] = {
    "required-only": {},
    "optional": {"subject": "room/4", "time": datetime(2026, 11, 30, 23, 59, 58, 123456,
                                                         tzinfo=UTC),
                 "datacontenttype": "application/json",
                 "dataschema": "https://example.com/schemas/Reading/v1.json"},
    "extensions": {"subject": "room/5", "datacontenttype": "application/json",
                   "time": datetime(2026, 12, 1, 11, 0, 0, tzinfo=timezone(timedelta(hours=1))),
                   "partitionkey": "sensor-5", "comexampleext": "ü-value", "sequence": 42,
                   "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """A Reading type mapped to a CloudEvents type, one route per CloudEvents format."""
    root: Path = tmp_path_factory.mktemp("ce-config")
    (root / "topology.yaml").write_text(yaml.safe_dump(TOPOLOGY, sort_keys=False))
    (root / "schemas" / "Reading").mkdir(parents=True)
    (root / "schemas" / "Reading" / "v1.json").write_text(json.dumps(SCHEMA))
    return load_config(root)


def _sent(data: dict[str, Any], extra: Mapping[str, Any]) -> CloudEvent:
    return CloudEvent({"specversion": "1.0", "type": CE_TYPE, "source": "urn:sensor:hall",
                       "id": "ev-42", **extra}, data)


def _without_time(envelope: Envelope) -> Envelope:
    """The input without the ``time`` the SDK's ``CloudEvent`` invents when none is given."""
    p = envelope.properties
    if p.content_type == "application/cloudevents+json":
        body = json.loads(envelope.body)
        del body["time"]
        return Envelope(json.dumps(body, ensure_ascii=False).encode(), p, envelope.exchange)
    headers = {k: v for k, v in p.headers.items() if not k.endswith("time")}
    return Envelope(envelope.body, Properties(content_type=p.content_type, headers=headers),
                    envelope.exchange)


def _on_wire(body: bytes, props: Properties) -> dict[str, Any]:
    """The attributes a copy really carries (the SDK's reader invents a missing ``time``)."""
    if props.content_type == "application/cloudevents+json":
        return {k: v for k, v in json.loads(body).items() if k not in ("data", "data_base64")}
    return {k.removeprefix("ce-"): v for k, v in props.headers.items() if k.startswith("ce-")}


def _ce_binary(event: CloudEvent) -> Envelope:
    written = rabbitmq.to_binary_event(event)
    return Envelope(written.body, Properties(content_type=written.content_type,
                                             headers=dict(written.headers)), "ingress")


def _structured(event: CloudEvent) -> Envelope:
    written = rabbitmq.to_structured_event(event)
    return Envelope(written.body, Properties(content_type=written.content_type), "ingress")


def _amqp(colon: bool) -> Callable[[CloudEvent], Envelope]:
    def make(event: CloudEvent) -> Envelope:
        written = amqp.to_binary_event(event)
        headers = {(k.replace("cloudEvents_", "cloudEvents:") if colon else k): v
                   for k, v in written.application_properties.items()}
        return Envelope(written.application_data,
                        Properties(content_type=written.properties.get("content-type"),
                                   headers=headers), "ingress")
    return make


EVENT_INPUTS: dict[str, Callable[[CloudEvent], Envelope]] = {
    "binary-ce-": _ce_binary, "binary-cloudEvents_": _amqp(colon=False),
    "binary-cloudEvents:": _amqp(colon=True), "structured": _structured,
}
#: Plain messages: the properties a publisher set (the router fills in the rest).
PLAIN: dict[str, dict[str, Any]] = {
    "plain-bare": {},
    "plain-full": {"message_id": "m-9", "timestamp": datetime(2026, 11, 30, 8, 0, 1, tzinfo=UTC),
                   "headers": {"x-schema-version": 1}},
}


def _wire(body: bytes, props: Properties) -> rabbitmq.RabbitMQMessage:
    """The copy as a consumer gets it: header values as text, as the integration test reads."""
    headers = {k: v.decode() if isinstance(v, bytes) else str(v)
               for k, v in props.headers.items()}
    return rabbitmq.RabbitMQMessage(headers, props.content_type, body)


def _emitted(config: Config, envelope: Envelope) -> dict[str, tuple[bytes, Properties]]:
    """Every copy as ``Settler`` publishes it, by route."""
    prepared = prepare(envelope, config)
    assert isinstance(prepared.outcome, Forward), prepared.outcome
    out = {}
    for copy in prepared.outcome.copies:
        out[copy.route] = _publish(prepared.envelope, copy)
    return out


def _publish(envelope: Envelope, copy: Copy) -> tuple[bytes, Properties]:
    trace = {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}  # the producer span's
    properties = copy_properties(envelope, copy, trace)
    body = envelope.body if copy.body is None else copy.body
    assert copy.form is not None, f"route {copy.route} copy is not a CloudEvent"
    return present(copy.form, body, properties, NOW)


def _check(got: CloudEvent, mode: str, copy: tuple[bytes, Properties],
           expected: Mapping[str, Any], data: Any) -> None:
    """The spec's required attributes on the wire, the expected ones as the SDK reads them,
    JSON data, the copy's trace context as the distributed-tracing extension."""
    attributes, wire = got.get_attributes(), _on_wire(*copy)
    assert copy[1].content_type == ("application/cloudevents+json" if mode == "structured"
                                    else "application/json")
    for name in ("specversion", "id", "source", "type"):
        assert isinstance(wire.get(name), str), name
        assert wire[name], name
    for name, value in expected.items():
        assert attributes.get(name) == value, (name, attributes.get(name), value)
    assert attributes.get("datacontenttype") == "application/json"
    assert got.get_extension("traceparent") == TRACEPARENT
    assert got.get_extension("tracestate") == TRACESTATE
    assert got.get_data() == data
    assert json.dumps(got.get_data()) == json.dumps(data)  # same types, keys in order


def _expected_event(extra: Mapping[str, Any], source: str, mode: str) -> dict[str, Any]:
    """What the copy carries of an input event's attributes.

    The ``ce-`` (RabbitMQ) binding writes every attribute as text, so an integer
    extension is read as a string; the AMQP binding (``cloudEvents_``/``cloudEvents:``)
    keeps integers but writes ``time`` as an AMQP timestamp, in milliseconds.  What
    the input binding lost is lost before the router reads it."""
    expected: dict[str, Any] = {"specversion": "1.0", "id": "ev-42", "type": CE_TYPE,
                                "source": "urn:sensor:hall"}
    textual = source == "binary-ce-" or mode == "binary"
    for name, value in extra.items():
        if name in ("traceparent", "datacontenttype"):
            continue  # the copy's own trace context; the data is written as JSON
        if isinstance(value, datetime):
            expected[name] = _millis(value) if source.startswith("binary-cloudEvents") \
                else value
        else:
            expected[name] = str(value) if textual else value
    if "dataschema" in extra:
        expected["dataschema"] = f"{BASE_URI}Reading/v1.json"
    return expected


def _millis(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


EVENT_CASES = [pytest.param(i, a, d, m, id=f"{i}/{a}/{d}/to-{m}")
               for i in EVENT_INPUTS for a in ATTRIBUTES for d in DATA for m in FORMATS]


@pytest.mark.conformance(SUITE)
@pytest.mark.parametrize(("source", "attrs", "shape", "mode"), EVENT_CASES)
def test_an_event_copy_reads_back_with_the_sdk(config: Config, source: str, attrs: str,
                                               shape: str, mode: str) -> None:
    """A CloudEvent in any mode comes out in the route's mode with its attributes and data."""
    extra, data = ATTRIBUTES[attrs], DATA[shape]
    envelope = EVENT_INPUTS[source](_sent(data, extra))
    body, props = _emitted(config, envelope if "time" in extra else _without_time(envelope))[mode]
    got = rabbitmq.from_rabbitmq_event(_wire(body, props))
    expected = _expected_event(extra, source, mode)
    wire = _on_wire(body, props)
    assert ("time" in wire) == ("time" in extra)  # optional: not made up for an event
    if "dataschema" not in extra:
        assert "dataschema" not in got.get_attributes()
    _check(got, mode, (body, props), expected, data)


PLAIN_CASES = [pytest.param(p, d, m, id=f"{p}/{d}/to-{m}")
               for p in PLAIN for d in DATA for m in FORMATS]


@pytest.mark.conformance(SUITE)
@pytest.mark.parametrize(("plain", "shape", "mode"), PLAIN_CASES)
def test_a_plain_message_copy_reads_back_as_an_event(config: Config, plain: str, shape: str,
                                                     mode: str) -> None:
    """A plain JSON message becomes an event: the configured source, the mapped type, its id
    (else one from the body), its timestamp (else the send time), its schema."""
    props = PLAIN[plain]
    data = DATA[shape]
    envelope = Envelope(json.dumps(data, ensure_ascii=False).encode(),
                        Properties(type="Reading", content_type="application/json", **props),
                        "ingress")
    body, out = _emitted(config, envelope)[mode]
    got = rabbitmq.from_rabbitmq_event(_wire(body, out))
    assert "time" in _on_wire(body, out)
    if "message_id" not in props:  # no message id: one derived from the body
        assert re.fullmatch("[0-9a-f]{32}", got.get_id())
    expected = {"source": SOURCE, "type": CE_TYPE, "time": props.get("timestamp", NOW),
                "dataschema": f"{BASE_URI}Reading/v1.json"}
    if "message_id" in props:
        expected["id"] = props["message_id"]
    _check(got, mode, (body, out), expected, data)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=12)


@pytest.mark.conformance(SUITE)
@given(st.dictionaries(st.text(max_size=8), _JSON, max_size=5),
       st.sampled_from(sorted(EVENT_INPUTS)), st.sampled_from(sorted(FORMATS)))
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_json_data_survives_every_mode(config: Config, extra: dict[str, Any], source: str,
                                           mode: str) -> None:
    """Generated JSON data (big integers, any unicode, nesting) reads back unchanged."""
    data = {**extra, "sensor": "s-h"}
    body, props = _emitted(config, EVENT_INPUTS[source](_sent(data, {})))[mode]
    got = rabbitmq.from_rabbitmq_event(_wire(body, props))
    assert {"specversion", "id", "source", "type"} <= _on_wire(body, props).keys()
    assert got.get_data() == data
    assert got.get_extension("traceparent") == TRACEPARENT
