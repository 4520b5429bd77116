"""Stage "upcast": a routed copy's body carried up to the schema version its route asks for.

The chain of upcasters is frozen configuration (``router.config.upcasters``,
read from ``evolution.yaml``); ``run`` applies it to a fresh copy of the body,
so the decoded body shared by every route is never mutated.  Pure.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from router.config.upcasters import StepFailed, Upcaster, describe

__all__ = ["Failed", "run"]


@dataclass(frozen=True, slots=True)
class Failed:
    """Why an upcast did not produce a message."""

    reason: str


def run(chain: Sequence[Upcaster], body: Any) -> Any | Failed:
    """``body`` after every upcaster of ``chain`` (a fresh value), or why a step failed."""
    result = copy.deepcopy(body)
    for upcaster in chain:
        for step in upcaster.steps:
            try:
                result = step.apply(result)
            except StepFailed as exc:
                return Failed(f"upcast v{upcaster.source}->v{upcaster.target}: "
                              f"{describe(step)}: {exc}")
            except Exception as exc:  # noqa: BLE001 -- user code: any failure dead-letters
                return Failed(f"upcast v{upcaster.source}->v{upcaster.target}: "
                              f"{describe(step)} raised {type(exc).__name__}: {exc}")
    return result
