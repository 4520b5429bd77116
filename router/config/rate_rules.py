"""The ``rate_limits`` section of ``policies/*.yaml``, parsed into frozen rules.

The buckets that apply them are ``router.core.ratelimit``.

Policy section (``policies/*.yaml``), first matching rule wins::

    rate_limits:
      - match: "Order*"          # glob on the message type
        rate: 50/s               # tokens per second (also 3000/m, 0.5/s)
        burst: 100               # bucket size (default: one second's worth, at least 1)
        per: publisher           # one bucket per publisher (default), or: type, global
        on_excess: shape         # shape: park the message on the broker and try again
                                 # after ``shape_delay`` (nothing dropped); reject:
                                 # dead-letter it as ``rate_limited``
        shape_delay: 1s
        shared: false            # true: one bucket for every replica, kept in Redis

Buckets live in each router process unless the rule is ``shared``.  With N
replicas consuming the ingress queue, RabbitMQ spreads deliveries over them,
so a process-local rule lets about N times its rate through; a shared rule's
buckets live in Redis (``router.runtime.sharedlimit``), so all replicas together pass
its rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath
from typing import Any

from router.config.durations import parse_duration
from router.config.fields import Fields, Shape
from router.config.source import Document
from router.errors import Problem

__all__ = ["Excess", "Per", "RateRule", "parse_rate", "parse_rate_limits"]


_RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*(s|m|h)\s*$")


_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


class Per(StrEnum):
    """Whose bucket a message draws from."""

    PUBLISHER = "publisher"
    TYPE = "type"
    GLOBAL = "global"


class Excess(StrEnum):
    """What happens to a message over the rate."""

    SHAPE = "shape"  # park it on the broker and route it again later: nothing dropped
    REJECT = "reject"  # dead-letter it as rate_limited


@dataclass(frozen=True, slots=True)
class RateRule:
    match: str
    rate: float  # tokens per second
    burst: float
    per: Per
    on_excess: Excess
    shape_delay: float
    where: str
    shared: bool = False  # buckets in Redis, common to every replica

    def key(self, index: int, publisher: str | None, message_type: str) -> tuple[object, ...]:
        """The bucket a message draws from: per rule, and per publisher and/or type."""
        return (index, publisher if self.per == Per.PUBLISHER else None,
                message_type if self.per in (Per.PUBLISHER, Per.TYPE) else None)

    def shared_key(self, namespace: str, publisher: str | None, message_type: str) -> str:
        """The Redis key of a shared bucket: per deployment (``namespace``), rule and key."""
        _, who, what = self.key(0, publisher, message_type)
        parts = (namespace, self.match, self.per, "" if who is None else str(who),
                 "" if what is None else str(what))
        return "mcp:ratelimit:" + ":".join(p.replace(":", "%3A") for p in parts)


def parse_rate(value: Any) -> float | None:
    """Tokens per second from ``50/s``, ``3000/m``, ``10/h``; None if invalid."""
    if isinstance(value, str) and (m := _RATE.match(value)) and float(m.group(1)) > 0:
        return float(m.group(1)) / _PER[m.group(2)]
    return None


def parse_rate_limits(doc: Document, raw: Any, problems: list[Problem]) -> list[RateRule]:
    """Every valid ``rate_limits`` rule of one file, in order; the rest become problems."""
    rules: list[RateRule] = []
    for f in Fields.rules(doc, "rate_limits", raw, problems,
                          shape=Shape({"match", "rate", "burst", "per", "on_excess", "shape_delay",
                                   "shared"}, "rate limit")):
        rate = parse_rate(f.data.get("rate"))
        if rate is None:
            f.fail(("rate",), "rate must be like 50/s, 3000/m or 10/h")
            continue
        burst = f.get("burst", float, max(rate, 1.0))
        if burst < 1:
            f.fail(("burst",), "burst must be at least 1")
        delay = parse_duration(f.data.get("shape_delay", "1s"))
        if delay is None or delay < 0.001:
            f.fail(("shape_delay",), "shape_delay must be a duration such as 500ms or 2s")
            delay = 1.0
        rule = RateRule(f.name("match"), rate, burst,
                        Per(f.choice("per", tuple(Per), Per.PUBLISHER)),
                        Excess(f.choice("on_excess", tuple(Excess), Excess.SHAPE)), round(delay, 3),
                        f"policies/{PurePath(doc.file).name}:{f.line()}",
                        f.get("shared", bool, False))
        if f.valid:
            rules.append(rule)
    return rules
