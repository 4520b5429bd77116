"""The journal: what happened to each recent message, by message id, in memory.

The router records, for every message it handles, when it arrived (and as
what: type, version, publisher, trace id, a retry round or a replay), the
policy decisions, the routes that matched, each copy and the broker's
confirmation of it, retries, holds, the dead letter and its reason.  It keeps
the ``size`` most recently *seen* message ids (default 10,000; the oldest is
dropped first) and at most ``MAX_EVENTS`` events per message.  Nothing is
written to disk: a restarted router remembers nothing, and ``mcp-router
follow`` then looks into the dead letters.

The API is small so that any HTTP front end can serve it::

    journal = Journal(size=10_000)
    journal.record("m-1", "arrived", type="OrderCreated", version=2)
    journal.get("m-1")   # {"message_id": "m-1", "events": [{"at": ..., "event": ...}, ...]}
    journal.get("nope")  # None

``record`` is on the hot path and does the least it can (a dict look-up and
an append; ``bench/throughput.py --journal`` measures it); ``get`` formats.
``Journal(size=0)`` records nothing.  Not thread-safe: the router records
and serves from its one event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["DEFAULT_SIZE", "MAX_EVENTS", "Journal"]

DEFAULT_SIZE = 10_000
MAX_EVENTS = 200  # per message: a copy retried for days must not grow without end

_Event = tuple[float, str, dict[str, Any]]


class Journal:
    """A bounded map from message id to the events recorded about it, oldest first."""

    def __init__(self, size: int = DEFAULT_SIZE,
                 clock: Callable[[], float] = time.time) -> None:
        if size < 0:
            raise ValueError(f"journal size must be 0 or more, got {size}")
        self.size = size
        self._clock = clock
        self._messages: OrderedDict[str, list[_Event]] = OrderedDict()
        self.dropped_events = 0  # events past MAX_EVENTS of one message, not kept

    def __len__(self) -> int:
        return len(self._messages)

    def record(self, message_id: str | None, event: str, **detail: Any) -> None:
        """Note ``event`` (``arrived``, ``routed``, ``copy``...) about ``message_id`` now.

        ``detail`` values should be JSON-able (str, numbers, bools, lists, dicts).
        A message seen again (a retry, a replay) becomes the most recent one.
        """
        if not self.size or message_id is None:
            return
        messages = self._messages
        events = messages.get(message_id)
        if events is None:
            events = messages[message_id] = []
            if len(messages) > self.size:
                messages.popitem(last=False)
        elif event == "arrived":
            messages.move_to_end(message_id)
        if len(events) < MAX_EVENTS:
            events.append((self._clock(), event, detail))
        else:
            self.dropped_events += 1

    def get(self, message_id: str) -> dict[str, Any] | None:
        """Everything recorded about ``message_id`` as JSON-able data, or None."""
        events = self._messages.get(message_id)
        if events is None:
            return None
        listed = [{"at": _iso(at), "event": event, **detail} for at, event, detail in events]
        first = next((d for _, e, d in events if e == "arrived"), {})
        return {"message_id": message_id, "type": first.get("type"),
                "trace_id": first.get("trace_id"), "events": listed,
                "truncated": len(events) >= MAX_EVENTS}


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
