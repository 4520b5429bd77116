"""What the router tells the journal about one message (pure): arrival and decision.

Each function returns the ``detail`` of one ``Journal.record`` call, built
only from the envelope and the pipeline's outcome, so that what ``follow``
shows is what the router acted on.  ``x-mcp-replays`` is noted as the
message states it (``mcp-router dlq replay`` counts it up); the journal is
for reading, nothing decides on it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, assert_never

from router.core import headers as xmcp
from router.core.envelope import Envelope
from router.core.ladder import Comeback, RetryState
from router.core.outcome import DeadCopy, DeadLetter, Delay, Forward, Outcome

__all__ = ["Note", "arrival", "decision"]


class Note(StrEnum):
    """The events the router records in the journal (what ``follow`` shows)."""

    ARRIVED = "arrived"
    ROUTED = "routed"
    REFUSED = "refused"
    SHAPED = "shaped"
    COPY = "copy"  # one publish of a copy, confirmed or not
    RETRY = "retry"  # parked for a round of the ladder
    HELD = "held"  # parked to wait (no live consumer, open circuit)
    PARKED = "parked"  # a whole shaped message parked
    DEAD_LETTERED = "dead_lettered"
    REQUEUED = "requeued"


def arrival(envelope: Envelope, retry: Comeback | None, trace_id: str | None) -> dict[str, Any]:
    """Where the delivery came from and as what; a retry round or a replay says so."""
    p = envelope.properties
    version = p.headers.get("x-schema-version")
    replays = p.headers.get(xmcp.REPLAYS)
    detail: dict[str, Any] = {
        "type": p.type, "exchange": envelope.exchange, "routing_key": envelope.routing_key,
        "publisher": p.user_id, "trace_id": trace_id, "redelivered": envelope.redelivered,
        "version": version if isinstance(version, int) and not isinstance(version, bool)
        else None,
    }
    if retry is not None:
        route = retry.route or None if isinstance(retry, RetryState) else None
        detail.update(retry_round=retry.retries, route=route, last_error=retry.last_error)
    if isinstance(replays, int) and not isinstance(replays, bool) and replays > 0:
        detail["replay"] = replays
    return detail


def decision(outcome: Outcome) -> tuple[Note, dict[str, Any]]:
    """The event and detail of what the pipeline decided."""
    match outcome:
        case Forward(message=message, copies=copies, overrides=overrides):
            # Each copy's destination is in its own "copy" event; this stays cheap.
            routes = [copies[0].route] if len(copies) == 1 else \
                list(dict.fromkeys(c.route for c in copies))
            return Note.ROUTED, {"type": message.message_type, "version": message.version,
                              "routes": routes, "copies": len(copies),
                              "policies": dict(overrides) if overrides else {}}
        case DeadLetter(reason=reason, error=error, message_type=message_type):
            return Note.REFUSED, {"type": message_type, "reason": reason.value, "error": error}
        case DeadCopy(reason=reason, error=error, message_type=message_type, route=route):
            return Note.REFUSED, {"type": message_type, "reason": reason.value, "error": error,
                                  "route": route}
        case Delay(delay=delay, reason=reason, message_type=message_type):
            return Note.SHAPED, {"type": message_type, "delay_seconds": delay, "why": reason}
        case _:
            assert_never(outcome)
