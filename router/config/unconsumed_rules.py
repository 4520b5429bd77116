"""The ``unconsumed`` section of ``policies/*.yaml``: what to do with copies of a route
that no live service consumes, parsed into frozen rules.

First matching rule wins::

    unconsumed:
      - match: "Payment*"      # glob on the message type
        action: wait           # wait: hold copies of an unconsumed route in the retry
        wait: 10s              #   tier (no retry round spent) until a consumer is live;
                               # dead_letter: dead-letter them as no_consumer;
                               # deliver (the default): publish anyway, the queue holds them
        grace: 15s             # after the router starts listening, assume nothing before

The policy acts only once the router has listened for ``grace``: a router that
just started has not heard from anyone yet.

The registry that knows who is live is ``router.discovery.registry``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath
from typing import Any

from router.config.durations import parse_duration
from router.config.fields import Fields, Shape
from router.config.source import Document
from router.errors import Problem

__all__ = ["UnconsumedAction", "UnconsumedRule", "parse_unconsumed", "unconsumed_rule"]


class UnconsumedAction(StrEnum):
    """What happens to copies of a route that no live service consumes."""

    WAIT = "wait"  # hold them in the retry tier until a consumer is live
    DEAD_LETTER = "dead_letter"  # dead-letter them as no_consumer
    DELIVER = "deliver"  # publish anyway: the queue holds them


@dataclass(frozen=True, slots=True)
class UnconsumedRule:
    """One ``unconsumed`` rule: for which types, what to do, and its timings."""

    match: str
    action: UnconsumedAction
    wait: float
    grace: float
    where: str


def unconsumed_rule(rules: tuple[UnconsumedRule, ...], message_type: str) -> UnconsumedRule | None:
    """The first rule whose glob matches ``message_type``."""
    for rule in rules:
        if fnmatch.fnmatchcase(message_type, rule.match):
            return rule
    return None


def parse_unconsumed(doc: Document, raw: Any, problems: list[Problem]) -> list[UnconsumedRule]:
    """The ``unconsumed`` section of one policy file."""
    rules: list[UnconsumedRule] = []
    for f in Fields.rules(doc, "unconsumed", raw, problems,
                          shape=Shape({"match", "action", "wait", "grace"}, "unconsumed rule")):
        times = {}
        for key, default in (("wait", "10s"), ("grace", "15s")):
            value = parse_duration(f.data.get(key, default))
            if value is None or not 0.001 <= value <= 86400:
                f.fail((key,), f"{key} must be a duration such as 500ms, 10s or 1m")
                value = 1.0
            times[key] = round(value, 3)
        rule = UnconsumedRule(f.name("match"),
                              UnconsumedAction(f.choice("action", tuple(UnconsumedAction),
                                                       UnconsumedAction.DELIVER)),
                              times["wait"], times["grace"],
                              f"policies/{PurePath(doc.file).name}:{f.line()}")
        if f.valid:
            rules.append(rule)
    return rules
