"""Whatever content header a publisher sends, the router's dead letter of it can be sent.

Property-based, without a broker: hostile frames (``tests.wirestrategies``)
go through the installed decoder and ``envelope_of`` as a delivery would; the
envelope's properties, and its dead letter's, must encode and fit a frame.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace

import pamqp.frame
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import commands, header

from router.broker import wire
from router.broker.amqp import envelope_of
from router.broker.encodable import FRAME_MAX, MAX_PROPERTIES_BYTES, wire_properties
from router.core.outbound import dead_letter_properties
from router.core.outcome import DeadLetter, Reason
from tests.rawamqp import properties
from tests.wirestrategies import hostile_properties


@pytest.fixture(autouse=True, scope="module")
def _installed() -> Iterator[None]:
    wire.install()
    yield
    wire.uninstall()


def _delivered(props: bytes, routing_key: bytes) -> SimpleNamespace:
    payload = struct.pack(">HHQ", 60, 0, 2) + props
    _, _, content = pamqp.frame.unmarshal(struct.pack(">BHI", 2, 1, len(payload)) + payload
                                          + b"\xce")
    method = struct.pack(">HH", 60, 60) + bytes([4]) + b"ctag" + struct.pack(">Q", 1) + b"\0" \
        + bytes([11]) + b"mcp.ingress" + bytes([len(routing_key)]) + routing_key
    _, _, deliver = pamqp.frame.unmarshal(struct.pack(">BHI", 1, 1, len(method)) + method
                                          + b"\xce")
    return SimpleNamespace(header=content, body=b"{}", delivery=deliver)


def _frame_size(p: commands.Basic.Properties) -> int:
    return len(header.ContentHeader(0, 2, p).marshal()) + 8


@settings(max_examples=int(os.environ.get("MCP_FUZZ_EXAMPLES", "100")), deadline=None,
          database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(props=hostile_properties(), routing_key=st.binary(max_size=255))
def test_every_hostile_header_has_a_sendable_dead_letter(props: dict[str, bytes],
                                                         routing_key: bytes) -> None:
    """Decoding never raises; the envelope and its malformed dead letter encode, in a frame."""
    envelope = envelope_of(_delivered(properties(props), routing_key))  # type: ignore[arg-type]
    dead = DeadLetter(Reason.MALFORMED, "; ".join(envelope.defects) or "x", "T")

    letter = dead_letter_properties(envelope, dead, attempts=1, trace={},
                                    now=datetime(2026, 12, 1, tzinfo=UTC))

    assert _frame_size(wire_properties(envelope.properties)) - 20 <= MAX_PROPERTIES_BYTES
    assert _frame_size(wire_properties(letter)) <= FRAME_MAX
