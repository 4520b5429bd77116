"""AMQP 0-9-1 frames for the router's own link (``router.broker.amqplink``): cut, read, written.

``FrameCutter`` cuts a byte stream into frames without copying more than each
payload.  The frames the hot path meets most (``basic.deliver``, ``basic.ack``,
``basic.nack``) are read here by hand, and ordinary content headers by
``router.broker.propread``; every other method, and every content header the
hand reader is not sure of, goes through the tolerant decoders of
``router.broker.wire`` (pamqp's, mended), so a frame no publisher should be
able to send still costs only its message.  Writing is the mirror: ``publish``
gives the three frames (or more, for a body larger than a frame) of one
``basic.publish`` as one ``bytes``, and the acks are packed by hand; other
methods are pamqp's ``marshal``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pamqp.frame
from pamqp import header

from router.broker import propread, wire
from router.broker.propwire import short_string

__all__ = ["BEAT_FRAME", "FRAME_MAX", "Deliver", "FrameCutter", "FrameError", "Publish", "ack",
           "confirm", "content_header", "method", "method_frame", "nack", "publish", "reject"]

METHOD, HEADER, BODY, BEAT = 1, 2, 3, 8
END = b"\xce"
FRAME_MAX = 131072  # what RabbitMQ offers; the tune may lower it
BEAT_FRAME = struct.pack(">BHI", BEAT, 0, 0) + END
_HEAD = struct.Struct(">BHI")
_LONGLONG = struct.Struct(">Q")
_DELIVER = b"\x00\x3c\x00\x3c"
ACK_INDEX, NACK_INDEX = b"\x00\x3c\x00\x50", b"\x00\x3c\x00\x78"
_PUBLISH = struct.pack(">HHH", 60, 40, 0)
_ACK = struct.Struct(">BHIHHQB")  # a whole basic.ack / nack / reject frame but its end
_HEADER_PREFIX = struct.Struct(">HHQ")


class FrameError(Exception):
    """The stream is not AMQP any more (a frame without its end byte): close the link."""


@dataclass(slots=True)
class Deliver:
    """A ``basic.deliver`` read on the hot path: what ``pamqp``'s would carry."""

    consumer_tag: str
    delivery_tag: int
    redelivered: bool
    exchange: str
    routing_key: str
    wire_problems: list[str] = field(default_factory=list)


class FrameCutter:
    """Whole frames out of a byte stream, as ``(type, channel, payload)``."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, int, bytes]]:
        buffer = self._buffer
        buffer += data
        position, size = 0, len(buffer)
        try:
            while size - position >= 8:
                kind, channel, length = _HEAD.unpack_from(buffer, position)
                end = position + 7 + length
                if end >= size:
                    break
                if buffer[end] != 0xCE:
                    raise FrameError(f"frame of type {kind} on channel {channel} has no end byte")
                payload = bytes(buffer[position + 7:end])
                position = end + 1
                yield kind, channel, payload
        finally:
            del buffer[:position]


def method(payload: bytes) -> Any:
    """The method a method frame carries: hand-read on the hot path, else pamqp's."""
    if payload[:4] == _DELIVER:
        try:
            return _deliver(payload)
        except (UnicodeDecodeError, IndexError, struct.error):
            pass  # the tolerant decoder below says what is wrong with it
    return wire.unmarshal_method(payload)


def _deliver(payload: bytes) -> Deliver:
    length = payload[4]
    consumer_tag = payload[5:5 + length].decode()
    at = 5 + length
    (tag,) = _LONGLONG.unpack_from(payload, at)
    redelivered = bool(payload[at + 8] & 1)
    at += 9
    length = payload[at]
    exchange = payload[at + 1:at + 1 + length].decode()
    at += 1 + length
    length = payload[at]
    routing_key = payload[at + 1:at + 1 + length].decode()
    if at + 1 + length != len(payload):
        raise IndexError("basic.deliver longer than its fields")
    return Deliver(consumer_tag, tag, redelivered, exchange, routing_key)


def confirm(payload: bytes) -> tuple[int, bool]:
    """The delivery tag and ``multiple`` bit of a ``basic.ack`` or ``basic.nack``."""
    (tag,) = _LONGLONG.unpack_from(payload, 4)
    return tag, bool(payload[12] & 1)


def content_header(payload: bytes) -> header.ContentHeader:
    """A content header: hand-read when it is an ordinary one (``propread``), else by the
    tolerant decoder, so one that does not decode still gives its body size (``wire``)."""
    decoded = propread.content_header(payload)
    return decoded if decoded is not None else wire.unmarshal_header(payload)


def method_frame(channel: int, value: Any) -> bytes:
    return pamqp.frame.marshal(value, channel)


@dataclass(frozen=True, slots=True)
class Publish:
    """Where one ``basic.publish`` goes."""

    exchange: str
    routing_key: str
    mandatory: bool = True


def publish(channel: int, to: Publish, properties: bytes, body: bytes, frame_max: int) -> bytes:
    """The frames of one ``basic.publish`` (``properties`` encoded: ``router.broker.propwire``);
    raises ``ValueError`` for a name longer than a short string."""
    arguments = _PUBLISH + short_string(to.exchange) + short_string(to.routing_key) + \
        (b"\x01" if to.mandatory else b"\x00")
    parts = [_HEAD.pack(METHOD, channel, len(arguments)), arguments, END]
    head = _HEADER_PREFIX.pack(60, 0, len(body)) + properties
    parts += [_HEAD.pack(HEADER, channel, len(head)), head, END]
    step = frame_max - 8
    for start in range(0, len(body), step):
        chunk = body[start:start + step]
        parts += [_HEAD.pack(BODY, channel, len(chunk)), chunk, END]
    return b"".join(parts)


def ack(channel: int, tag: int, *, multiple: bool) -> bytes:
    return _ACK.pack(METHOD, channel, 13, 60, 80, tag, 1 if multiple else 0) + END


def nack(channel: int, tag: int, *, multiple: bool, requeue: bool) -> bytes:
    bits = (1 if multiple else 0) | (2 if requeue else 0)
    return _ACK.pack(METHOD, channel, 13, 60, 120, tag, bits) + END


def reject(channel: int, tag: int, *, requeue: bool) -> bytes:
    return _ACK.pack(METHOD, channel, 13, 60, 90, tag, 1 if requeue else 0) + END
