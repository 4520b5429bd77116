"""A dead letter's body as indented JSON, with the parts its error names marked (pure).

Validation errors name JSON pointers (``OrderCreated v2: /items/0/quantity:
minimum: ...``); ``pointers`` finds them and ``marked_json`` lays the body out
as text pieces, each marked or not, for a template to escape and wrap.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["Piece", "marked_json", "pointers"]

Piece = tuple[str, bool]  # text, and whether the error names it

_POINTER = re.compile(r"(?:^|(?<=: )|(?<=; ))(/[^\s:;]*): [A-Za-z$]+: ")


def _segments(pointer: str) -> tuple[str, ...]:
    if pointer in ("", "/"):
        return ()
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/"))


def pointers(error: str) -> set[tuple[str, ...]]:
    """The JSON pointers an error text names, as path segments (``()`` is the root)."""
    return {_segments(m[1]) for m in _POINTER.finditer(error)}


class _Layout:
    def __init__(self, marks: set[tuple[str, ...]]) -> None:
        self.marks = marks
        self.pieces: list[Piece] = []

    def emit(self, text: str, marked: bool) -> None:
        if self.pieces and self.pieces[-1][1] == marked:
            self.pieces[-1] = (self.pieces[-1][0] + text, marked)
        else:
            self.pieces.append((text, marked))

    def value(self, value: Any, path: tuple[str, ...], depth: int, marked: bool) -> None:
        marked = marked or path in self.marks
        pad = "  " * (depth + 1)
        if isinstance(value, dict) and value:
            self.emit("{\n", marked)
            for i, (key, item) in enumerate(value.items()):
                self.emit(pad, marked)
                self.emit(f"{json.dumps(key, ensure_ascii=False)}: ",
                          marked or (*path, key) in self.marks)
                self.value(item, (*path, key), depth + 1, marked)
                self.emit(",\n" if i < len(value) - 1 else "\n", marked)
            self.emit("  " * depth + "}", marked)
        elif isinstance(value, list) and value:
            self.emit("[\n", marked)
            for i, item in enumerate(value):
                self.emit(pad, marked)
                self.value(item, (*path, str(i)), depth + 1, marked)
                self.emit(",\n" if i < len(value) - 1 else "\n", marked)
            self.emit("  " * depth + "]", marked)
        else:
            self.emit(json.dumps(value, ensure_ascii=False), marked)


def marked_json(body: bytes, error: str) -> list[Piece] | None:
    """The body laid out with the error's pointers marked; None if it is not JSON."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    layout = _Layout(pointers(error))
    try:
        layout.value(value, (), 0, False)
    except RecursionError:
        return None
    return layout.pieces
