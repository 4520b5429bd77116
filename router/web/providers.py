"""What the web server is given: plain callables and objects, no router internals.

``Ops`` serves the probes, metrics, services, reload and the journal; a
``RouterService``, a supervisor of worker processes or a test can provide
them.  ``Console`` adds the operator's pages: the configuration, the
console's broker access, the token, the audit log and where rates come from.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from router.config.configuration import Config
from router.web.audit import AuditLog
from router.web.auth import Credentials
from router.web.broker import ConsoleBroker
from router.web.flow import Rates, Totals
from router.web.jobs import Jobs
from router.web.strategies import BranchCounts, ShadowCounts

__all__ = ["Console", "Lookup", "Ops", "Probe", "Reload"]

Probe = Callable[[], tuple[bool, dict[str, object]]]
Reload = Callable[[], Awaitable[tuple[bool, dict[str, object]]]]


# The router's journal of recent messages: a message id's record, or None (``Journal.get``).
Lookup = Callable[[str], Mapping[str, Any] | None]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Ops:
    """The operational endpoints: ``/healthz``, ``/readyz``, ``/metrics``, JSON pages,
    ``POST /reload`` and ``/messages/<id>``."""

    ready: Probe
    metrics: Callable[[], bytes]
    reload: Reload | None = None
    pages: Mapping[str, Callable[[], Mapping[str, object]]] = field(default_factory=dict)
    messages: Lookup | None = None  # GET /messages/<id>


@dataclass
class Console:
    """The operator's pages and what they read and change."""

    config: Callable[[], Config]
    broker: ConsoleBroker
    credentials: Credentials
    audit: AuditLog
    totals: Callable[[], Awaitable[Totals | None]] | None = None  # None: no rates
    circuits: Callable[[], Mapping[str, Mapping[str, object]]] | None = None
    services: Callable[[], Mapping[str, object]] | None = None
    branches: Callable[[], BranchCounts] | None = None  # None: configured shares only
    shadows: Callable[[], ShadowCounts] | None = None
    jaeger_url: str | None = None
    clock: Callable[[], datetime] = _utc_now
    rates: Rates = field(default_factory=Rates)
    jobs: Jobs = field(default_factory=Jobs)
    sample_every: float = 1.0
