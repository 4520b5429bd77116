"""What a service instance says about itself on the control exchange.

The protocol lives in ``router.discovery`` (one home for the service and the
router side); this module re-exports what the SDK uses.
"""

from __future__ import annotations

from router.discovery import (
    ANNOUNCEMENT_TYPE,
    CONTROL_EXCHANGE,
    DEFAULT_HEARTBEAT,
    PING_KEY,
    Announcement,
    Handles,
    announce_key,
    goodbye,
    goodbye_key,
    handles_of,
    instance_id,
)

__all__ = [
    "ANNOUNCEMENT_TYPE",
    "CONTROL_EXCHANGE",
    "DEFAULT_HEARTBEAT",
    "PING_KEY",
    "Announcement",
    "Handles",
    "announce_key",
    "goodbye",
    "goodbye_key",
    "handles_of",
    "instance_id",
]
