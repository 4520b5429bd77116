"""Who consumes what: the live registry of service instances (pure; time passed in).

Services announce themselves on the control exchange (docs/SPEC.md, "Service
discovery"): every instance publishes an announcement to the ``mcp.control``
topic exchange at start and every ``heartbeat`` seconds (routing key
``service.announce.<name>``), answers each ``service.ping`` by announcing at
once, and says goodbye on a clean stop (``service.goodbye.<name>``).  This
module is the one home of that protocol (``router.sdk`` builds its bodies
here) and of the router's registry: the router
keeps every instance until three of its heartbeats pass without an
announcement, or until it says goodbye.  From the registry and the topology
the router knows which routes have no live consumer: a route is consumed
when a live instance reads a queue the route's copies reach and handles the
route's message type.

What the router does with copies of an unconsumed route is a policy
(``router.config.unconsumed_rules``); it acts only once the router has listened
for its ``grace``: a router that just started has not heard from anyone yet.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from router.config.reach import queues_reached
from router.config.topology import Topology, is_glob

__all__ = [
    "ANNOUNCEMENT_TYPE",
    "CONTROL_EXCHANGE",
    "DEFAULT_HEARTBEAT",
    "EXPIRY_HEARTBEATS",
    "PING_KEY",
    "Announcement",
    "Handles",
    "ServiceRegistry",
    "announce_key",
    "goodbye",
    "goodbye_key",
    "handles_of",
    "instance_id",
    "parse_announcement",
    "unconsumed_routes",
]

CONTROL_EXCHANGE = "mcp.control"  # topic, durable; whoever uses it declares it
ANNOUNCEMENT_TYPE = "mcp.ServiceAnnouncement"
PING_KEY = "service.ping"
DEFAULT_HEARTBEAT = 5.0  # seconds between announcements


def announce_key(name: str) -> str:
    """``service.announce.<name>``."""
    return f"service.announce.{name}"


def goodbye_key(name: str) -> str:
    """``service.goodbye.<name>``."""
    return f"service.goodbye.{name}"


def instance_id(name: str, hostname: str, pid: int, token: str) -> str:
    """``<name>-<hostname>-<pid>-<4 hex>``: unique per process, readable in a listing."""
    return f"{name}-{hostname}-{pid}-{token[:4]}"


@dataclass(frozen=True, slots=True)
class Handles:
    """One message type a service handles; no versions means any version."""

    message_type: str
    versions: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Announcement:
    """One instance: its name, queues and handlers, as published at every heartbeat."""

    name: str
    instance: str
    queues: tuple[str, ...]
    handles: tuple[Handles, ...]
    heartbeat: float
    sdk: str
    started: datetime

    def body(self) -> dict[str, Any]:
        """The JSON object of the protocol (``queue`` is the first of ``queues``)."""
        return {
            "name": self.name,
            "instance": self.instance,
            "queue": self.queues[0] if self.queues else None,
            "queues": list(self.queues),
            "handles": [{"type": h.message_type, "versions": list(h.versions)}
                        for h in sorted(self.handles, key=lambda h: h.message_type)],
            "heartbeat": self.heartbeat,
            "sdk": self.sdk,
            "started": self.started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.body())


def handles_of(versions_by_type: Mapping[str, Iterable[int]]) -> tuple[Handles, ...]:
    """``Handles`` for every registered type, versions ascending."""
    return tuple(Handles(t, tuple(sorted(set(v)))) for t, v in sorted(versions_by_type.items()))


def goodbye(name: str, instance: str) -> bytes:
    """The body of a goodbye: who is leaving."""
    return orjson.dumps({"name": name, "instance": instance})


EXPIRY_HEARTBEATS = 3
MAX_BODY = 65536
MAX_HANDLES = 1000
MIN_HEARTBEAT, MAX_HEARTBEAT = 0.05, 3600.0


def _text(value: Any, what: str, limit: int = 255) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"{what} must be a non-empty string of at most {limit} characters")
    return value


def _versions(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        raise ValueError("versions must be a list of positive integers")
    return tuple(sorted(set(value)))


def parse_announcement(body: bytes) -> Announcement | str:
    """The announcement in ``body``, or why it is not one (input from the network)."""
    if len(body) > MAX_BODY:
        return f"announcement of {len(body)} bytes is over {MAX_BODY}"
    try:
        data = orjson.loads(body)
        if not isinstance(data, dict):
            return "announcement is not a JSON object"
        queues_raw = data.get("queues", [data["queue"]] if data.get("queue") else [])
        if not isinstance(queues_raw, list):
            return "queues must be a list"
        queues = tuple(_text(q, "a queue") for q in queues_raw)
        handles_raw = data.get("handles", [])
        if not isinstance(handles_raw, list) or len(handles_raw) > MAX_HANDLES:
            return f"handles must be a list of at most {MAX_HANDLES}"
        handles = tuple(Handles(_text(h.get("type"), "a handled type"),
                                _versions(h.get("versions", [])))
                        for h in handles_raw if isinstance(h, dict))
        heartbeat = data.get("heartbeat", 5.0)
        if not isinstance(heartbeat, int | float) or isinstance(heartbeat, bool) or \
                not MIN_HEARTBEAT <= heartbeat <= MAX_HEARTBEAT:
            return f"heartbeat must be a number of seconds from {MIN_HEARTBEAT} to {MAX_HEARTBEAT}"
        started_raw = data.get("started")
        started = datetime.fromisoformat(started_raw.replace("Z", "+00:00")) \
            if isinstance(started_raw, str) else datetime.fromtimestamp(0, UTC)
        return Announcement(_text(data.get("name"), "name"), _text(data.get("instance"),
                            "instance"), queues, handles, float(heartbeat),
                            str(data.get("sdk", ""))[:255], started)
    except (orjson.JSONDecodeError, ValueError, KeyError, AttributeError, TypeError) as exc:
        return f"not an announcement: {exc}"


@dataclass
class _Seen:
    announcement: Announcement
    last_seen: float
    first_seen: float

    def expires(self) -> float:
        return self.last_seen + EXPIRY_HEARTBEATS * self.announcement.heartbeat


@dataclass
class ServiceRegistry:
    """Live service instances by instance id."""

    _seen: dict[str, _Seen] = field(default_factory=dict)

    def announce(self, announcement: Announcement, now: float) -> bool:
        """Record a heartbeat; True when the instance is new."""
        seen = self._seen.get(announcement.instance)
        self._seen[announcement.instance] = _Seen(announcement, now,
                                                  now if seen is None else seen.first_seen)
        return seen is None

    def goodbye(self, instance: str) -> Announcement | None:
        """Forget an instance that stopped cleanly; the announcement it had, if known."""
        seen = self._seen.pop(instance, None)
        return None if seen is None else seen.announcement

    def expire(self, now: float) -> list[Announcement]:
        """Forget instances silent for three heartbeats; the ones forgotten."""
        gone = [i for i, seen in self._seen.items() if seen.expires() <= now]
        return [self._seen.pop(i).announcement for i in gone]

    def live(self) -> list[Announcement]:
        return [seen.announcement for seen in self._seen.values()]

    def listing(self, now: float) -> list[dict[str, Any]]:
        """Every live instance, for ``/services`` and ``mcp-router services``."""
        return [{**seen.announcement.body(),
                 "last_seen_seconds_ago": round(max(now - seen.last_seen, 0.0), 3),
                 "expires_in_seconds": round(max(seen.expires() - now, 0.0), 3)}
                for seen in sorted(self._seen.values(),
                                   key=lambda s: (s.announcement.name, s.announcement.instance))]


def _handles(announcement: Announcement, message_type: str) -> bool:
    if is_glob(message_type):  # a catch-all route: reading its queue is consuming it
        return True
    return any(fnmatch.fnmatchcase(message_type, h.message_type) for h in announcement.handles)


def _reached(topology: Topology, exchange: str, routing_key: str | None,
             message_type: str) -> tuple[str, ...]:
    if routing_key is None and is_glob(message_type):  # any key: every bound queue
        return tuple(b.queue for b in topology.all_bindings() if b.exchange == exchange)
    return queues_reached(topology, exchange, routing_key or message_type)


def unconsumed_routes(topology: Topology, live: Iterable[Announcement]) -> dict[str, str]:
    """Route name -> why it has no live consumer (routes reaching no queue are left out)."""
    instances = list(live)
    found: dict[str, str] = {}
    for route in topology.routes:
        queues = {q for d in route.destinations()
                  for q in _reached(topology, d.exchange, d.routing_key, route.message_type)}
        if not queues:
            continue
        if not any(q in a.queues and _handles(a, route.message_type)
                   for a in instances for q in queues):
            found[route.name] = (f"no live service handles {route.message_type} from "
                                 f"{', '.join(sorted(queues))}")
    return found


