"""A reader for protobuf text format, as much as the cel-spec conformance files use.

``parse(text)`` gives a message as a dict from field name to the list of its
values (every field may repeat): a scalar is ``str`` (string literals, with
C escapes decoded and adjacent literals joined; ``bytes`` when they are not
UTF-8), ``int``, ``float`` or an identifier (``true``, ``NULL_VALUE``) as
``Name``; a nested message is another dict.  ``[type.googleapis.com/T]``
extension and Any names are kept as field names with their brackets.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["Message", "Name", "parse"]

Message = dict[str, list[Any]]


class Name(str):
    """An identifier value (an enum constant, ``true``), not a string literal."""

    __slots__ = ()


_TOKEN = re.compile(r"""
    \s+|\#[^\n]*                                  # blanks and comments
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[uUfF]?
                (?![\w.]))
  | (?P<name>\[[^\]]+\]|-?[A-Za-z_][\w.]*)
  | (?P<punct>[{}<>:;,\[\]])
""", re.VERBOSE)
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{4})"
                     r"|U([0-9a-fA-F]{8})|(.))", re.DOTALL)
_SIMPLE = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, "'": 39,
           '"': 34, "?": 63}


def _unescape(literal: str) -> bytes:
    out = bytearray()
    pos = 0
    for found in _ESCAPE.finditer(literal):
        out += literal[pos:found.start()].encode()
        octal, hexa, u4, u8, simple = found.groups()
        if octal or hexa:
            out.append(int(octal, 8) if octal else int(hexa, 16))
        elif u4 or u8:
            out += chr(int(u4 or u8, 16)).encode("utf-8", "surrogatepass")
        else:
            out.append(_SIMPLE[simple])
        pos = found.end()
    return bytes(out + literal[pos:].encode())


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        if found is None:
            raise ValueError(f"textproto: cannot read {text[pos:pos + 30]!r}")
        pos = found.end()
        if found.lastgroup is not None:
            tokens.append((found.lastgroup, found.group(found.lastgroup)))
    return tokens


class _Reader:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def message(self, close: str | None) -> Message:
        fields: Message = {}
        while (token := self.peek()) is not None and token[1] != close:
            kind, name = self.take()
            if kind != "name":
                raise ValueError(f"textproto: expected a field name, got {name!r}")
            if self.peek() == ("punct", ":"):
                self.take()
            fields.setdefault(name, []).extend(self.values())
            if self.peek() in (("punct", ";"), ("punct", ",")):
                self.take()
        if close is not None:
            self.take()
        return fields

    def values(self) -> list[Any]:
        kind, text = self.peek() or ("", "")
        if (kind, text) == ("punct", "["):
            self.take()
            items = []
            while self.peek() != ("punct", "]"):
                items.extend(self.values())
                if self.peek() == ("punct", ","):
                    self.take()
            self.take()
            return items
        if kind == "punct" and text in "{<":
            self.take()
            return [self.message("}" if text == "{" else ">")]
        return [self.scalar()]

    def scalar(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            raw = _unescape(text[1:-1])
            while (self.peek() or ("", ""))[0] == "string":
                raw += _unescape(self.take()[1][1:-1])
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw
        if kind == "number":
            body = text.rstrip("uUfF") if not text.lower().startswith(("0x", "-0x")) else text
            if re.fullmatch(r"[-+]?(0x[0-9a-fA-F]+|\d+)", body):
                return int(body, 0) if "x" in body.lower() else int(body)
            return float(body)
        if kind == "name":
            return Name(text)
        raise ValueError(f"textproto: unexpected {text!r}")


def parse(text: str) -> Message:
    """The message written in ``text``."""
    return _Reader(text).message(None)
