"""Every AMQP header in the router's namespace, ``x-mcp-*``, read and written.

The router and ``router.sdk`` spell these names only through this module (the
contract is SPEC "Messages out" and "Retries"). Values arriving in these headers
come from publishers as much as from the router: they are data, never counters
to trust (a publisher can send any ``x-mcp-attempts``), see ``core.ladder``.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "x-mcp-"

# On every routed copy
ROUTE: Final = "x-mcp-route"  # the route that sent the copy
PUBLISHER: Final = "x-mcp-publisher"  # the publisher's broker-validated user_id, moved here
BRANCH: Final = "x-mcp-branch"  # the alternative or shadow the copy took
SHADOW: Final = "x-mcp-shadow"  # true on a shadow copy
FORMAT: Final = "x-mcp-format"  # how a copy was re-formed (CloudEvents)
ROUTES: Final = "x-mcp-routes"
BRANCHES: Final = "x-mcp-branches"

# On every dead letter (SPEC "Messages out")
REASON: Final = "x-mcp-reason"
ERROR: Final = "x-mcp-error"
ORIGINAL_EXCHANGE: Final = "x-mcp-original-exchange"
ORIGINAL_ROUTING_KEY: Final = "x-mcp-original-routing-key"
ATTEMPTS: Final = "x-mcp-attempts"
DEAD_LETTERED_AT: Final = "x-mcp-dead-lettered-at"
DESTINATION_EXCHANGE: Final = "x-mcp-destination-exchange"
DESTINATION_ROUTING_KEY: Final = "x-mcp-destination-routing-key"
REPLAYS: Final = "x-mcp-replays"  # how many times ``dlq replay`` sent it back
RAW_HEADERS: Final = "x-mcp-raw-headers"  # a header table that did not decode, as bytes
SERVICE: Final = "x-mcp-service"  # the service (router.sdk) that dead-lettered it
QUEUE: Final = "x-mcp-queue"

# On a copy parked in a retry tier (SPEC "Retries")
RETRIES: Final = "x-mcp-retries"
LAST_ERROR: Final = "x-mcp-last-error"
RETRY_ROUTE: Final = "x-mcp-retry-route"
RETRY_EXCHANGE: Final = "x-mcp-retry-exchange"
RETRY_ROUTING_KEY: Final = "x-mcp-retry-routing-key"
RETRY_ORIGIN: Final = "x-mcp-retry-origin"
RETRY_BRANCH: Final = "x-mcp-retry-branch"  # the route alternative the copy took (core.choose)


def is_ours(name: str) -> bool:
    """Whether a header is in the router's namespace."""
    return name.startswith(PREFIX)
