"""How the router runs (not what it routes: that is ``Config``): ``Settings``."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from router.broker.amqp import HEARTBEAT, broker_urls, broker_user
from router.broker.settleparts import HOLD_LIMIT

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """How the router runs (not what it routes: that is ``Config``)."""

    amqp_url: str  # one URL, or the nodes of a cluster comma-separated
    prefetch: int = 256
    publish_channels: int = 8
    reconnect_delay: float = 1.0
    max_reconnect_delay: float = 15.0
    healthy_after: float = 10.0  # a session routing this long resets the reconnect backoff
    reconnect_jitter: float = 0.5  # the random fraction of every reconnect wait
    heartbeat: int = HEARTBEAT
    redis_url: str | None = None  # where rate-limit rules with ``shared: true`` keep buckets
    drain_timeout: float = 30.0  # SIGTERM: how long in-flight work may take to finish
    hold_limit: float = HOLD_LIMIT  # how long a delivery may wait for a blocked broker
    kek: bytes | None = field(default=None, repr=False)  # unwraps the data keys (keys/)

    @functools.cached_property
    def user(self) -> str:
        """The broker user the router connects as (its retries carry it as ``user_id``)."""
        return broker_user(self.amqp_url)

    @functools.cached_property
    def urls(self) -> tuple[str, ...]:
        """Every broker node, in the order they are tried."""
        return broker_urls(self.amqp_url)

    def __repr__(self) -> str:  # the URL may carry a password
        return f"Settings(prefetch={self.prefetch}, publish_channels={self.publish_channels})"
