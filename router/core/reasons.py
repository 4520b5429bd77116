"""Why a message or a copy was dead-lettered: the values of ``x-mcp-reason`` (SPEC: "Messages out").

Its own module so that every decision module (the pipeline's outcomes, the retry
ladder, the SDK) can name a reason without importing the others.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Reason"]


class Reason(StrEnum):
    """The ``x-mcp-reason`` of a dead letter (SPEC: "Messages out")."""

    MALFORMED = "malformed"
    UNKNOWN_TYPE = "unknown_type"
    SCHEMA_INVALID = "schema_invalid"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    UNROUTABLE = "unroutable"
    RETRIES_EXHAUSTED = "retries_exhausted"
    NO_CONSUMER = "no_consumer"  # the route has no live consumer and policy says so
    DELIVERY_LIMIT = "delivery_limit"  # its last delivery the ingress allows (core.sealing)
    # Set by services (``router.sdk``), not by the router itself:
    HANDLER_FAILED = "handler_failed"  # the handler raised on every attempt, or refused it
    UNHANDLED = "unhandled"  # no handler for this type (or version) in the consuming service
