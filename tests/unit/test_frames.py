"""The link's frames (``router.broker.frames``) against pamqp, without a broker.

The cutter must give the same frames however the stream is split into reads;
the hand-read ``basic.deliver`` must say what pamqp reads from the same bytes
(and step aside for the tolerant decoder when a name is not UTF-8); the
hand-packed acks and publishes must be frames pamqp decodes to the method and
fields meant.
"""

from __future__ import annotations

import itertools
import math
import struct
from datetime import UTC, datetime
from typing import Any

import pamqp.exceptions
import pamqp.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands, header, heartbeat

from router.broker import frames
from router.broker.propwire import encode_properties
from router.core.envelope import Properties

Frame = tuple[int, int, bytes]


def _raw(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def _deliver_payload(tag: bytes, delivery_tag: int, redelivered: bool, exchange: bytes,
                     routing_key: bytes) -> bytes:
    """A ``basic.deliver`` method payload with its short strings exactly as given."""
    return struct.pack(">HHB", 60, 60, len(tag)) + tag + struct.pack(">Q?", delivery_tag,
                                                                     redelivered) \
        + bytes([len(exchange)]) + exchange + bytes([len(routing_key)]) + routing_key


def _stream() -> tuple[bytes, list[Frame]]:
    """Several frames of every kind, on several channels, and what each one is."""
    deliver = commands.Basic.Deliver(consumer_tag="mcp-router.1.1", delivery_tag=7,
                                     exchange="orders", routing_key="order.created")
    values: list[tuple[int, Any]] = [
        (0, commands.Connection.Tune(channel_max=2047, frame_max=131072, heartbeat=60)),
        (1, deliver),
        (1, header.ContentHeader(0, 5, commands.Basic.Properties(message_id="m-1"))),
        (0, heartbeat.Heartbeat()),
        (2, commands.Basic.Ack(delivery_tag=3, multiple=True)),
    ]
    raw = b"".join(pamqp.frame.marshal(value, channel) for channel, value in values)
    raw += _raw(frames.BODY, 1, b"hello") + _raw(frames.BODY, 3, b"") \
        + _raw(frames.BODY, 65535, bytes(range(256)) * 3)
    expected, offset = [], 0
    while offset < len(raw):
        kind, channel, length = struct.unpack_from(">BHI", raw, offset)
        expected.append((kind, channel, raw[offset + 7:offset + 7 + length]))
        offset += 8 + length
    return raw, expected


STREAM, FRAMES = _stream()


def _stock(raw: bytes) -> Any:
    """The method of one whole frame as pamqp reads it."""
    return pamqp.frame.unmarshal(raw)[2]


def _cut(chunks: list[bytes]) -> list[Frame]:
    cutter = frames.FrameCutter()
    return [frame for chunk in chunks for frame in cutter.feed(chunk)]


def test_the_stream_in_one_read_gives_every_frame() -> None:
    assert _cut([STREAM]) == FRAMES
    assert [kind for kind, _, _ in FRAMES] == [1, 1, 2, 8, 1, 3, 3, 3]


def test_the_stream_byte_by_byte_gives_the_same_frames() -> None:
    assert _cut([STREAM[i:i + 1] for i in range(len(STREAM))]) == FRAMES


@settings(max_examples=200, deadline=None, database=None)
@given(cuts=st.lists(st.integers(0, len(STREAM)), max_size=40))
def test_any_split_of_the_stream_gives_the_same_frames(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    assert _cut([STREAM[a:b] for a, b in itertools.pairwise(bounds)]) == FRAMES


def test_nothing_of_a_stream_is_left_behind_after_its_last_frame() -> None:
    """Fed twice, the stream gives its frames twice: no byte of the first stays buffered."""
    cutter = frames.FrameCutter()
    first = list(cutter.feed(STREAM))
    assert list(cutter.feed(b"")) == []
    assert list(cutter.feed(STREAM)) == first == FRAMES


def test_a_partial_frame_waits_for_the_rest() -> None:
    cutter = frames.FrameCutter()
    beat = frames.BEAT_FRAME
    assert list(cutter.feed(beat + beat[:7])) == [(8, 0, b"")]
    assert list(cutter.feed(beat[7:])) == [(8, 0, b"")]


def test_a_frame_without_its_end_byte_is_a_frame_error() -> None:
    """The frames before it still come out; then the stream is not AMQP any more."""
    cutter = frames.FrameCutter()
    broken = struct.pack(">BHI", frames.BODY, 1, 3) + b"abc" + b"\x00"
    got: list[Frame] = []
    with pytest.raises(frames.FrameError, match="no end byte"):
        got.extend(cutter.feed(frames.BEAT_FRAME + broken + frames.BEAT_FRAME))
    assert got == [(8, 0, b"")]


def test_a_length_that_overshoots_the_end_byte_is_a_frame_error() -> None:
    """A length too short by one puts a payload byte where the end byte should be."""
    body = _raw(frames.BODY, 1, b"abcd")
    lying = body[:3] + struct.pack(">I", 3) + body[7:]
    with pytest.raises(frames.FrameError):
        list(frames.FrameCutter().feed(lying))


# pamqp reads a longlong as signed (2^63 comes back negative); AMQP's is unsigned, and the
# hand-read tag is.  RabbitMQ's delivery tags count up from 1 per channel: compared below 2^63.
MAX_TAG = 2**63 - 1
_NAMES = ["", "amq.ctag-Zx8Q0pJ-DgCGyzTbwnKXcQ", "mcp-router.1.42", "orders", "order.created",
          "é", "заказы.создан", "注文", "🐇.routing.key", "x" * 255, "é" * 127]


@pytest.mark.parametrize(("tag", "exchange", "key"), [
    ("mcp-router.1.1", "", ""),
    ("", "orders", "order.created"),
    ("é", "заказы", "🐇.routing.key"),
    ("x" * 255, "é" * 127, "注文" * 42),
])
@pytest.mark.parametrize(("delivery_tag", "redelivered"), [(1, False), (MAX_TAG, True)])
def test_the_hand_read_deliver_is_what_pamqp_reads(tag: str, exchange: str, key: str,
                                                   delivery_tag: int, redelivered: bool) -> None:
    raw = _raw(frames.METHOD, 5, _deliver_payload(tag.encode(), delivery_tag, redelivered,
                                                  exchange.encode(), key.encode()))
    ((_, channel, payload),) = _cut([raw])
    stock = _stock(raw)

    fast = frames.method(payload)

    assert isinstance(fast, frames.Deliver)  # the hot path read it, not the fallback
    assert channel == 5
    assert (fast.consumer_tag, fast.delivery_tag, fast.redelivered, fast.exchange,
            fast.routing_key) == (stock.consumer_tag, stock.delivery_tag, stock.redelivered,
                                  stock.exchange, stock.routing_key)
    assert fast.wire_problems == []


@settings(max_examples=150, deadline=None, database=None)
@given(tag=st.sampled_from(_NAMES), exchange=st.sampled_from(_NAMES),
       key=st.text(max_size=60).filter(lambda s: len(s.encode("utf-8", "replace")) <= 255),
       delivery_tag=st.integers(0, MAX_TAG), redelivered=st.booleans())
def test_every_utf8_deliver_reads_as_pamqp_reads_it(tag: str, exchange: str, key: str,
                                                    delivery_tag: int,
                                                    redelivered: bool) -> None:
    try:
        raw_key = key.encode()
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8 at all (the next test's case)
        return
    payload = _deliver_payload(tag.encode(), delivery_tag, redelivered, exchange.encode(),
                               raw_key)
    stock = _stock(_raw(frames.METHOD, 1, payload))

    fast = frames.method(payload)

    assert isinstance(fast, frames.Deliver)
    assert (fast.consumer_tag, fast.delivery_tag, fast.redelivered, fast.exchange,
            fast.routing_key) == (stock.consumer_tag, stock.delivery_tag, stock.redelivered,
                                  stock.exchange, stock.routing_key)


@pytest.mark.parametrize("field", ["tag", "exchange", "key"])
def test_a_name_not_in_utf8_goes_to_the_tolerant_decoder(field: str) -> None:
    """pamqp refuses such a deliver; the link still reads it, and notes what is wrong."""
    names = {"tag": b"ctag", "exchange": b"orders", "key": b"order.created"}
    names[field] = b"bad\xff\xfe"
    payload = _deliver_payload(names["tag"], 9, True, names["exchange"], names["key"])
    with pytest.raises(UnicodeDecodeError):
        commands.Basic.Deliver().unmarshal(payload[4:])  # pamqp's own reading

    value: Any = frames.method(payload)
    problems: list[str] = value.wire_problems

    assert isinstance(value, commands.Basic.Deliver)  # the tolerant decoder's, not ours
    assert value.delivery_tag == 9
    assert value.redelivered is True
    read = {"tag": value.consumer_tag, "exchange": value.exchange, "key": value.routing_key}
    assert read[field] == "bad\ufffd\ufffd"
    assert {k: v for k, v in read.items() if k != field} == \
        {k: v.decode() for k, v in names.items() if k != field}
    assert len(problems) == 1
    assert "not UTF-8" in problems[0]


def test_a_deliver_longer_than_its_fields_is_left_to_pamqp() -> None:
    payload = _deliver_payload(b"ctag", 1, False, b"", b"k") + b"\x00"

    value = frames.method(payload)

    assert isinstance(value, commands.Basic.Deliver)
    assert (value.consumer_tag, value.routing_key) == ("ctag", "k")


@pytest.mark.parametrize("cut", [1, 5, 13, 14, 20])
def test_a_truncated_deliver_is_never_half_read_by_hand(cut: int) -> None:
    """What comes back is pamqp's reading of it (a short string it slices short) or its
    error: the hand read declines."""
    payload = _deliver_payload(b"ctag", 1, False, b"orders", b"order.created")[:-cut]
    stock = commands.Basic.Deliver()
    try:
        stock.unmarshal(payload[4:])
    except ValueError:
        with pytest.raises(pamqp.exceptions.UnmarshalingException):
            frames.method(payload)
        return

    value = frames.method(payload)

    assert not isinstance(value, frames.Deliver)
    assert [getattr(value, name) for name in value.__slots__] == \
        [getattr(stock, name) for name in stock.__slots__]


def test_other_methods_are_pamqps() -> None:
    raw = pamqp.frame.marshal(commands.Channel.Close(reply_code=404, reply_text="NOT_FOUND",
                                                     class_id=60, method_id=40), 2)
    ((_, _, payload),) = _cut([raw])

    value = frames.method(payload)

    assert isinstance(value, commands.Channel.Close)
    assert (value.reply_code, value.reply_text, value.class_id, value.method_id) == \
        (404, "NOT_FOUND", 60, 40)


@pytest.mark.parametrize("multiple", [False, True])
@pytest.mark.parametrize("tag", [1, 255, 2**32 + 1, MAX_TAG])
def test_confirms_from_the_broker_give_their_tag_and_multiple_bit(tag: int,
                                                                  multiple: bool) -> None:
    for value, index in ((commands.Basic.Ack(delivery_tag=tag, multiple=multiple),
                          frames.ACK_INDEX),
                         (commands.Basic.Nack(delivery_tag=tag, multiple=multiple,
                                              requeue=True), frames.NACK_INDEX)):
        ((_, _, payload),) = _cut([pamqp.frame.marshal(value, 1)])
        assert payload[:4] == index
        assert frames.confirm(payload) == (tag, multiple)


def _decoded(raw: bytes) -> list[tuple[int, Any]]:
    """Every frame of ``raw`` as pamqp decodes it, checking it consumed all of them."""
    out, offset = [], 0
    while offset < len(raw):
        consumed, channel, value = pamqp.frame.unmarshal(raw[offset:])
        out.append((channel, value))
        offset += consumed
    assert offset == len(raw)
    return out


@pytest.mark.parametrize("multiple", [False, True])
@pytest.mark.parametrize("tag", [1, 2**32, MAX_TAG])
def test_acks_decode_as_basic_ack(tag: int, multiple: bool) -> None:
    ((channel, value),) = _decoded(frames.ack(7, tag, multiple=multiple))
    assert channel == 7
    assert isinstance(value, commands.Basic.Ack)
    assert (value.delivery_tag, value.multiple) == (tag, multiple)


@pytest.mark.parametrize("requeue", [False, True])
@pytest.mark.parametrize("multiple", [False, True])
def test_nacks_decode_as_basic_nack(multiple: bool, requeue: bool) -> None:
    ((channel, value),) = _decoded(frames.nack(65535, 2**40, multiple=multiple,
                                               requeue=requeue))
    assert channel == 65535
    assert isinstance(value, commands.Basic.Nack)
    assert (value.delivery_tag, value.multiple, value.requeue) == (2**40, multiple, requeue)


@pytest.mark.parametrize("requeue", [False, True])
def test_rejects_decode_as_basic_reject(requeue: bool) -> None:
    ((channel, value),) = _decoded(frames.reject(1, 12345, requeue=requeue))
    assert channel == 1
    assert isinstance(value, commands.Basic.Reject)
    assert (value.delivery_tag, value.requeue) == (12345, requeue)


PROPERTIES = Properties(
    content_type="application/json", headers={"x-mcp-attempts": 2, "traceparent": "00-ab"},
    delivery_mode=2, message_id="m-1", type="OrderCreated",
    timestamp=datetime(2026, 11, 24, 10, tzinfo=UTC), app_id="mcp-router")


@pytest.mark.parametrize(("size", "frame_max"), [
    (0, frames.FRAME_MAX), (1, frames.FRAME_MAX), (5000, 4096), (4088, 4096), (4089, 4096),
    (3 * 4088, 4096), (300_000, frames.FRAME_MAX)])
@pytest.mark.parametrize(("exchange", "key", "mandatory"), [
    ("", "queue.name", True), ("заказы", "🐇", False), ("x" * 255, "", True)])
def test_a_publish_is_the_frames_pamqp_decodes(size: int, frame_max: int, exchange: str,
                                               key: str, mandatory: bool) -> None:
    """Method, content header with the body's size and the properties, then the body in
    frames no larger than ``frame_max``."""
    body = bytes(i % 251 for i in range(size))

    raw = frames.publish(3, frames.Publish(exchange, key, mandatory),
                         encode_properties(PROPERTIES), body, frame_max)

    decoded = _decoded(raw)
    assert {channel for channel, _ in decoded} == {3}
    (_, method), (_, head), *chunks = decoded
    assert isinstance(method, commands.Basic.Publish)
    assert (method.exchange, method.routing_key, method.mandatory, method.immediate) == \
        (exchange, key, mandatory, False)
    assert isinstance(head, header.ContentHeader)
    assert head.body_size == size
    p = head.properties
    assert (p.content_type, p.headers, p.delivery_mode, p.message_id, p.message_type,
            p.timestamp, p.app_id) == ("application/json", dict(PROPERTIES.headers), 2, "m-1",
                                       "OrderCreated", PROPERTIES.timestamp, "mcp-router")
    assert len(chunks) == math.ceil(size / (frame_max - 8))
    assert b"".join(chunk.value for _, chunk in chunks) == body
    assert all(len(chunk.value) == frame_max - 8 for _, chunk in chunks[:-1])
    offset = 0
    while offset < len(raw):  # every frame, headers and end byte included, fits frame_max
        (length,) = struct.unpack_from(">I", raw, offset + 3)
        assert 8 + length <= frame_max
        offset += 8 + length


def test_a_name_longer_than_a_short_string_cannot_be_published() -> None:
    with pytest.raises(ValueError, match="longer than 255 bytes"):
        frames.publish(1, frames.Publish("é" * 128, ""), encode_properties(Properties()), b"",
                       frames.FRAME_MAX)
    with pytest.raises(ValueError, match="longer than 255 bytes"):
        frames.publish(1, frames.Publish("", "k" * 256), encode_properties(Properties()), b"",
                       frames.FRAME_MAX)


def test_the_heartbeat_frame_is_pamqps() -> None:
    assert pamqp.frame.marshal(heartbeat.Heartbeat(), 0) == frames.BEAT_FRAME
