"""Copies as CloudEvents: a route's ``format`` and the attributes the router fills in.

``format: as-is`` (the default) delivers a copy as the message came (a
CloudEvent stays one, in its mode); ``cloudevents-binary`` and
``cloudevents-structured`` deliver a CloudEvent in that mode, written by the
``cloudevents`` package's RabbitMQ binding.  The attributes are the event's
own when it came as one, else: ``specversion`` 1.0, ``id`` the message id,
``source`` the topology's ``cloudevents.source``, ``type`` the CloudEvents type
mapped to the message type (else the message type), ``time`` the message's
timestamp (else when the router sent it), ``datacontenttype``
``application/json`` and ``dataschema`` the schema version's URI.  The trace
context of the copy is the distributed-tracing extension (``traceparent``,
``tracestate``).  Pure; the time is passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from cloudevents.core.bindings import rabbitmq
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from router.config.cloudevents_spec import CloudEventsSpec, Form, Mode
from router.core.cloudevent import PREFIXES, Inbound
from router.core.decode import parse_body
from router.core.envelope import Envelope, Properties
from router.core.outcome import Decoded
from router.evolution.inlined import BASE_URI

__all__ = ["form_for", "present", "structured_body"]

_FORMAT = JSONFormat()
_TRACE = ("traceparent", "tracestate")
_MODES = {"cloudevents-binary": Mode.BINARY, "cloudevents-structured": Mode.STRUCTURED}


def _attributes(message: Envelope, message_type: str, version: int | None,
                spec: CloudEventsSpec) -> tuple[dict[str, Any], bool]:
    p = message.properties
    event_id = p.message_id or hashlib.sha256(message.body).hexdigest()[:32]
    attributes: dict[str, Any] = {
        "specversion": "1.0", "id": event_id, "source": spec.source,
        "type": spec.event_type(message_type), "datacontenttype": "application/json",
    }
    if p.timestamp is not None:
        attributes["time"] = p.timestamp
    if version is not None:
        attributes["dataschema"] = f"{BASE_URI}{message_type}/v{version}.json"
    return attributes, p.timestamp is None


def form_for(route_format: str, inbound: Inbound, copy_of: Decoded, spec: CloudEventsSpec, *,
             changed: bool) -> Form | None:
    """The form of a copy of ``inbound`` (None: the bytes and headers as they came).

    ``copy_of`` is the message as the copy carries it (its type, and the schema
    version the copy is upcast to); ``changed`` says its body was rewritten.
    """
    event, message = inbound.event, inbound.message
    message_type, version = copy_of.message_type, copy_of.version
    mode = _MODES.get(route_format)
    if mode is None:  # as-is: only a structured event whose data changed is written anew
        if event is None or event.mode is Mode.BINARY or not changed:
            return None
        return Form(Mode.STRUCTURED, event.attributes)
    if event is not None:
        attributes = {k: v for k, v in event.attributes.items() if k not in _TRACE}
        attributes["datacontenttype"] = "application/json"
        if version is not None and "dataschema" in attributes:
            attributes["dataschema"] = f"{BASE_URI}{message_type}/v{version}.json"
        return Form(mode, attributes)
    attributes, stamp = _attributes(message, message_type, version, spec)
    return Form(mode, attributes, stamp)


def _event(attributes: Mapping[str, Any], data: Any) -> CloudEvent:
    """The package's event of exactly these attributes: its constructor stamps a missing
    ``time`` with the clock, which would claim the occurrence happened when the copy was
    written (CloudEvents 1.0: ``time`` is optional and is the occurrence's)."""
    event = CloudEvent(dict(attributes), data)
    if "time" not in attributes:
        event.get_attributes().pop("time", None)  # get_attributes() is the event's own dict
    return event


def structured_body(attributes: Mapping[str, Any], data: bytes) -> bytes:
    """A structured-mode body: the attributes and the JSON data."""
    return _FORMAT.write(_event(attributes, parse_body(data) if data else None))


def present(form: Form, body: bytes, properties: Properties,
            now: datetime) -> tuple[bytes, Properties]:
    """The body and properties of a copy presented in ``form``; ``properties`` carries the
    copy's trace context in its headers."""
    attributes = dict(form.attributes)
    if form.stamp:
        attributes["time"] = now
    headers = {k: v for k, v in properties.headers.items()
               if not k.startswith(PREFIXES) and not k.lower().startswith("ce-")}
    for name in _TRACE:
        if isinstance(headers.get(name), str):
            attributes[name] = headers[name]
    if form.mode is Mode.STRUCTURED:
        return structured_body(attributes, body), replace(
            properties, headers=headers, content_type=_FORMAT.get_content_type())
    written = rabbitmq.to_binary(_event(attributes, None), _FORMAT)
    headers.update(written.headers)
    return body, replace(properties, headers=headers, content_type=written.content_type)
