"""The vocabulary of a compatibility check: a ``Break``, where it is, who reports it.

A ``Break`` names the field (a JSON pointer into the message, ``*`` for any
array item), why a reader may refuse what a writer allows, and the line in
the new version's file. ``Spot`` is where a comparison stands; a
``Comparison`` is what the keyword checks (``router.evolution.bounds``,
``router.evolution.containers``) need of the walk that calls them: the two labels,
where to record a break, and recursion into subschemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from router.evolution.inlined import Schema

__all__ = ["Break", "Comparison", "Spot", "show"]


@dataclass(frozen=True, slots=True)
class Break:
    """One reason a reader cannot read what a writer allows."""

    field: str  # JSON pointer into the message ("" is the whole message)
    why: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Spot:
    """Where the comparison is: the field's JSON pointer and the line in the new file."""

    at: str
    line: int | None

    @property
    def what(self) -> str:
        return f"field {self.at}" if self.at else "the message"

    def below(self, name: str) -> Spot:
        return Spot(f"{self.at}/{name.replace('~', '~0').replace('/', '~1')}", self.line)


class Comparison(Protocol):
    """One writer-against-reader walk, as the keyword checks see it."""

    @property
    def writer(self) -> str:
        """The writer's label ("v2")."""

    @property
    def reader(self) -> str:
        """The reader's label ("v3")."""

    @property
    def lines(self) -> Mapping[int, int]:
        """The line of each node of the new version's schema, by ``id``."""

    @property
    def new_is_reader(self) -> bool:
        """Whether the new version is the reader (a backward check)."""

    def miss(self, spot: Spot, why: str) -> None:
        """Record a break at ``spot``."""

    def trial(self, w: Schema, r: Schema, spot: Spot) -> list[Break]:
        """The breaks of one comparison, without recording them."""

    def sub(self, w: Schema, r: Schema, spot: Spot) -> None:
        """Record why some instance valid under ``w`` may be invalid under ``r``."""


def show(value: Any) -> str:
    """``value`` as a break quotes it: its ``repr``, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
