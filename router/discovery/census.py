"""``mcp-router services`` and ``check --live``: who is live right now, asked on the broker.

Both listen on the control exchange, ping every instance (each answers by
announcing at once) and collect what they hear for a short while, so they
need no running router.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from router.broker.amqp import connect
from router.broker.control import listen, ping
from router.config.configuration import Config
from router.discovery.registry import CONTROL_EXCHANGE, ServiceRegistry, unconsumed_routes
from router.errors import Problem

__all__ = ["format_services", "live_problems", "take_census"]

DEFAULT_WAIT = 2.0  # seconds to listen after the ping


async def take_census(amqp_url: str | Sequence[str], wait: float = DEFAULT_WAIT,
                      exchange: str = CONTROL_EXCHANGE) -> ServiceRegistry:
    """Every service instance on the control ``exchange`` that answers a ping (or
    heartbeats) within ``wait`` seconds."""
    registry = ServiceRegistry()
    connection = await connect(amqp_url, "mcp-router services")
    try:
        await listen(connection, lambda a: registry.announce(a, time.monotonic()),
                     registry.goodbye, exchange)
        await ping(connection, exchange)
        await asyncio.sleep(wait)
    finally:
        await connection.close()
    return registry


def format_services(registry: ServiceRegistry, *, as_json: bool) -> str:
    """The listing as a table (or JSON)."""
    listing = registry.listing(time.monotonic())
    if as_json:
        return json.dumps(listing, indent=2)
    if not listing:
        return "no live service instances answered"
    rows = [("SERVICE", "INSTANCE", "QUEUES", "HANDLES", "HEARTBEAT")]
    rows += [(item["name"], item["instance"], ",".join(item["queues"]) or "-",
              ",".join(_handled(h) for h in item["handles"]) or "-", f"{item['heartbeat']:g}s")
             for item in listing]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def _handled(handles: dict[str, Any]) -> str:
    versions = handles["versions"]
    return str(handles["type"]) + (f"@v{'/'.join(str(v) for v in versions)}" if versions else "")


def live_problems(config: Config, registry: ServiceRegistry, topology_file: str) -> list[Problem]:
    """A problem, at the route's line, for every route no live service consumes."""
    lines = {route.name: route.line for route in config.topology.routes}
    return [Problem(topology_file, f"route {name!r}: {why} (live check)", lines.get(name))
            for name, why in unconsumed_routes(config.topology, registry.live()).items()]
