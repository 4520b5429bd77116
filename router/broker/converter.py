"""The one converter from a delivery to the core's ``Envelope``, for the router and the SDK.

Both consume on the AMQP channel underneath aio-pika (``router.broker.consume``)
and read each ``basic.deliver`` (or ``basic.get-ok``) here, so a service sees a
message exactly as the router does: the same defects, the same properties.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from router.broker import wire
from router.broker.encodable import fit_raw, screen
from router.core.envelope import Envelope, Properties, text_value

__all__ = ["envelope_of", "undecodable"]


class Delivered(Protocol):
    """A delivery as a channel hands it over: aiormq's ``DeliveredMessage`` or
    ``router.broker.linkchannel.Delivery``."""

    @property
    def delivery(self) -> Any: ...

    @property
    def header(self) -> Any: ...

    @property
    def body(self) -> bytes: ...


def envelope_of(message: Delivered, *, invent_id: bool = True) -> Envelope:
    """The core's view of a delivery; a missing ``message_id`` gets a UUID when
    ``invent_id`` (the router's, which keys copies by it), else stays None (what a
    dead-letter listing or a service shows: the truth).

    A delivery whose properties did not decode (``router.broker.wire``) or cannot be
    sent on (``router.broker.encodable``) carries its sendable part, the ``defects``
    and, when the header table did not decode, its raw bytes.
    """
    p = message.header.properties
    defects: list[str] = []
    raw_headers = None
    if isinstance(p, wire.Undecoded):
        defects, raw_headers = list(p.problems), p.raw_headers
    message_id = text_value(p.message_id) or (str(uuid.uuid4()) if invent_id else None)
    properties = Properties(
        content_type=text_value(p.content_type),
        content_encoding=text_value(p.content_encoding),
        headers=p.headers if isinstance(p.headers, dict) else {},
        delivery_mode=p.delivery_mode,
        priority=p.priority,
        correlation_id=text_value(p.correlation_id),
        reply_to=text_value(p.reply_to),
        expiration=text_value(p.expiration),
        message_id=message_id,
        timestamp=p.timestamp,
        type=text_value(p.message_type),
        user_id=text_value(p.user_id),
        app_id=text_value(p.app_id),
    )
    properties, unsendable = screen(properties)
    properties, raw_headers, too_large = fit_raw(properties, raw_headers)
    delivery = message.delivery
    defects += getattr(delivery, "wire_problems", None) or []  # router.broker.wire.unmarshal_method
    return Envelope(
        body=message.body,
        properties=properties,
        exchange=getattr(delivery, "exchange", "") or "",
        routing_key=getattr(delivery, "routing_key", "") or "",
        redelivered=bool(getattr(delivery, "redelivered", False)),
        defects=(*defects, *unsendable, *too_large),
        raw_headers=raw_headers,
    )


def undecodable(message: Delivered) -> bool:
    """True when the delivery's frames did not decode (as opposed to decoding into
    something that cannot be sent on)."""
    return isinstance(message.header.properties, wire.Undecoded) or \
        bool(getattr(message.delivery, "wire_problems", None))

