"""CloudEvents at the ingress: an event in either content mode becomes the message it carries.

Binary mode puts the attributes in headers: ``ce-`` as the RabbitMQ binding of
the ``cloudevents`` package writes them (and Knative's eventing-rabbitmq), or
``cloudEvents_`` / ``cloudEvents:`` as its AMQP binding does; the body is the
data and ``content_type`` its ``datacontenttype``.  Structured mode is a body
of ``content-type: application/cloudevents+json`` holding attributes and data.
The ``cloudevents`` package parses and checks the attributes (required ones
present, ``time`` a timestamp, extension names lowercase).

``ingest`` gives the router the message inside: the data as body, the event's
``type`` mapped to a registry type (``cloudevents.types`` in the topology; an
unmapped type is looked up as it is), its ``id`` as ``message_id``, its
``time`` as timestamp, and ``x-schema-version`` from the header, a
``schemaversion`` attribute or a ``dataschema`` ending in ``v<N>`` or
``v<N>.json``.  CEL sees the attributes as ``event``.  Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from cloudevents.core.bindings import amqp, rabbitmq
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from router.config.cloudevents_spec import CloudEventsSpec, Mode
from router.core.decode import encode_body, parse_body
from router.core.envelope import Envelope, text_value
from router.core.outcome import DeadLetter, Reason

__all__ = ["PREFIXES", "STRUCTURED_TYPE", "Event", "Inbound", "ingest"]

STRUCTURED_TYPE = "application/cloudevents+json"
PREFIXES = ("ce-", "cloudEvents_", "cloudEvents:")
_DATASCHEMA_VERSION = re.compile(r"/v([1-9][0-9]{0,8})(?:\.json)?(?:[?#].*)?$")
_FORMAT = JSONFormat()
_REQUIRED = ("specversion", "id", "source", "type")


class _Read:
    """What a binding read, checked by the package's ``CloudEvent`` but kept as sent: the
    package would invent a missing ``id`` or ``time``, and an event without an id is not
    one (CloudEvents 1.0, "Required Attributes")."""

    def __init__(self, attributes: dict[str, Any], data: Any) -> None:
        missing = [name for name in _REQUIRED if name not in attributes]
        if missing:
            raise ValueError(f"missing required attribute(s): {', '.join(missing)}")
        if attributes["specversion"] != "1.0":
            raise ValueError(f"specversion {attributes['specversion']!r} is not supported "
                             "(only 1.0)")
        CloudEvent(dict(attributes), data)  # raises CloudEventValidationError
        self.attributes, self.data = attributes, data


def _factory(attributes: dict[str, Any], data: Any) -> Any:
    return _Read(attributes, data)


@dataclass(frozen=True)
class Event:
    """How an event arrived: its mode, its attributes (as the ``cloudevents`` package reads
    them) and, in binary mode, the header prefix it used."""

    mode: Mode
    attributes: Mapping[str, Any]
    prefix: str = ""


@dataclass(frozen=True)
class Inbound:
    """The message the router decides on, and the event it came in (None: a plain message).

    ``wire`` is the delivery as it came, with the message's type and id set as
    properties: what dead letters and retries carry, so they read the same again.
    """

    message: Envelope
    wire: Envelope
    event: Event | None = None


def _binary_prefix(headers: Mapping[str, Any]) -> str | None:
    for prefix in PREFIXES:
        key = f"{prefix}specversion"
        if any(k == key or (prefix == "ce-" and k.lower() == key) for k in headers):
            return prefix
    return None


def _header_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    text = text_value(value)
    return text if text is not None else str(value)


def _read(envelope: Envelope) -> tuple[Event, bytes] | str | None:
    """The event and its data bytes; an error text; None when this is no CloudEvent."""
    props = envelope.properties
    media = (props.content_type or "").split(";", 1)[0].strip().lower()
    headers = props.headers if isinstance(props.headers, Mapping) else {}
    if media.startswith("application/cloudevents"):
        if media != STRUCTURED_TYPE:
            return f"structured CloudEvents in {media!r} are not supported (only JSON)"
        # The router's own reading first (exact integers, a key twice refused); the
        # package then checks the attributes.
        exact = parse_body(envelope.body)
        message = rabbitmq.RabbitMQMessage({}, props.content_type, envelope.body)
        # The factory's value comes back: a _Read, whatever the binding's annotation says.
        read = cast("_Read", rabbitmq.from_structured(message, _FORMAT, _factory))
        data = exact.get("data", read.data)
        body = bytes(data) if isinstance(data, bytes | bytearray) else encode_body(data)
        return Event(Mode.STRUCTURED, read.attributes), body
    prefix = _binary_prefix(headers)
    if prefix is None:
        return None
    if prefix == "ce-":
        ce = {k: _header_text(v) for k, v in headers.items() if k.lower().startswith(prefix)}
        read = cast("_Read", rabbitmq.from_binary(
            rabbitmq.RabbitMQMessage(ce, props.content_type, b""), _FORMAT, _factory))
    else:
        found = {k: text_value(v) if isinstance(v, bytes | bytearray) else v
                 for k, v in headers.items() if k.startswith(prefix)}
        content = {"content-type": props.content_type} if props.content_type else {}
        read = cast("_Read", amqp.from_binary(amqp.AMQPMessage(content, found, b""), _FORMAT,
                                              _factory))
    return Event(Mode.BINARY, read.attributes, prefix), envelope.body


def _version(attributes: Mapping[str, Any], headers: Mapping[str, Any]) -> Any:
    if "x-schema-version" in headers:
        return headers["x-schema-version"]
    if attributes.get("schemaversion") is not None:
        return str(attributes["schemaversion"])
    match = _DATASCHEMA_VERSION.search(str(attributes.get("dataschema") or ""))
    return int(match.group(1)) if match else None


def ingest(envelope: Envelope, spec: CloudEventsSpec) -> Inbound | DeadLetter:
    """The message inside ``envelope``; a broken CloudEvent is a ``malformed`` dead letter."""
    try:
        read = _read(envelope)
    except (BaseCloudEventException, ValueError, TypeError, AttributeError, KeyError,
            RecursionError, OverflowError) as exc:
        read = f"not a valid CloudEvent: {type(exc).__name__}: {str(exc)[:300]}"
    if read is None:
        return Inbound(envelope, envelope)
    if isinstance(read, str):
        return DeadLetter(Reason.MALFORMED, read, envelope.properties.type)
    event, data = read
    attributes = event.attributes
    name = spec.registry_type(str(attributes["type"]))
    props = envelope.properties
    headers = dict(props.headers) if isinstance(props.headers, Mapping) else {}
    version = _version(attributes, headers)
    if version is not None:
        headers["x-schema-version"] = version
    time = attributes.get("time")
    message = replace(envelope, body=data, properties=replace(
        props, content_type=attributes.get("datacontenttype") or "application/json",
        message_id=str(attributes["id"]), type=name, headers=headers,
        timestamp=time if isinstance(time, datetime) else props.timestamp),
        event=_cel_attributes(attributes))
    wire = replace(envelope, properties=replace(
        props, type=name, message_id=str(attributes["id"])))
    return Inbound(message, wire, event)


def _cel_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes as CEL sees them (``event.source``, ``event.subject``...)."""
    return {k: v if isinstance(v, str | int | bool | datetime) else str(v)
            for k, v in attributes.items() if v is not None}
