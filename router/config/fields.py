"""Checking the shape of a parsed configuration mapping, collecting problems.

Every configuration loader reads mappings the same way: known keys only,
required keys present, each value of the expected type.  ``Fields`` does that
once and records each complaint as a located ``Problem`` instead of raising,
so ``check`` reports every mistake in one run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from router.config.source import Document, Path_
from router.errors import Problem

__all__ = ["Fields"]

T = TypeVar("T")

_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
    float: "a number",
    list: "a list",
    dict: "a mapping",
}


@dataclass
class Fields:
    """A reader over one mapping at ``path`` in ``doc`` that records problems."""

    doc: Document
    path: Path_
    problems: list[Problem]
    data: Mapping[str, Any] = field(default_factory=dict)
    valid: bool = True

    @classmethod
    def of(
        cls,
        doc: Document,
        path: Path_,
        value: Any,
        problems: list[Problem],
        *,
        allowed: set[str],
        what: str,
    ) -> Fields:
        """Start reading ``value``, which must be a mapping with only ``allowed`` keys."""
        reader = cls(doc, path, problems)
        if not isinstance(value, dict):
            reader.fail((), f"{what} must be a mapping, got {_kind(value)}")
            reader.valid = False
            return reader
        reader.data = value
        for key in value:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                reader.fail((str(key),), f"unknown key {key!r} in {what} (known: {known})")
        return reader

    @classmethod
    def rules(cls, doc: Document, section: str, raw: Any, problems: list[Problem], *,
              allowed: set[str], what: str) -> Iterator[Fields]:
        """A reader per rule of a policy section that must be a list of mappings;
        rules that are not mappings (and a section that is not a list) are reported."""
        if not isinstance(raw, list):
            problems.append(doc.problem((section,), f"{section!r} must be a list of rules"))
            return
        for i, item in enumerate(raw):
            reader = cls.of(doc, (section, i), item, problems, allowed=allowed, what=what)
            if reader.valid:
                yield reader

    def fail(self, sub: Path_, message: str) -> None:
        """Record a problem at ``sub`` below this mapping."""
        self.problems.append(self.doc.problem((*self.path, *sub), message))
        self.valid = False

    def get(self, key: str, kind: type[T], default: T, *, required: bool = False) -> T:
        """The value of ``key`` if it has type ``kind``; ``default`` (and a problem) otherwise."""
        if key not in self.data:
            if required:
                self.fail((), f"missing required key {key!r}")
            return default
        value = self.data[key]
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # type: ignore[return-value]  # T is float here
        if not ok:
            self.fail((key,), f"{key!r} must be {_TYPE_NAMES.get(kind, kind.__name__)}, "
                              f"got {_kind(value)}")
            return default
        return value  # type: ignore[no-any-return]  # isinstance(value, kind) above

    def name(self, key: str, *, required: bool = True) -> str:
        """A non-empty string value."""
        value = self.get(key, str, "", required=required)
        if required and key in self.data and isinstance(self.data[key], str) and not value:
            self.fail((key,), f"{key!r} must not be empty")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        """A string value that must be one of ``choices``."""
        value = self.get(key, str, default)
        if value not in choices:
            self.fail((key,), f"{key!r} must be one of {', '.join(choices)}, got {value!r}")
            return default
        return value

    def line(self, sub: Path_ = ()) -> int | None:
        """The line of this mapping (or of ``sub`` below it)."""
        return self.doc.line((*self.path, *sub))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return type(value).__name__
