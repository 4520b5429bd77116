"""A parser for CEL expressions into a small syntax tree, for ``check`` (pure).

The CEL library in use (``common-expression-language``) compiles and runs
expressions but exposes neither a syntax tree nor a checker with declared
types, so ``router.config.celcheck`` type-checks ``when`` expressions over this tree.
It follows the grammar of the CEL specification (``cel-spec/doc/langdef.md``):
ternary, ``||``, ``&&``, relations (``in`` included), arithmetic, unary
``!``/``-``, member selection, indexing, calls and method calls, list and map
literals, and every literal form.  The library compiles the expression first,
so a text that reaches this parser is valid CEL; what this parser does not
know (a message construction ``T{...}``, an optional ``.?f``) raises
``Unsupported`` and the checker then says nothing about the expression.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Binary", "Call", "Conditional", "Ident", "Index", "ListLit", "Literal", "MapLit", "Node",
    "Select", "Unary", "Unsupported", "parse",
]


class Unsupported(ValueError):
    """Text outside the subset this parser knows."""


@dataclass(frozen=True, slots=True)
class Literal:
    kind: str  # bool, int, uint, double, string, bytes, null
    value: object


@dataclass(frozen=True, slots=True)
class Ident:
    name: str


@dataclass(frozen=True, slots=True)
class Select:
    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Index:
    operand: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    target: Node | None
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Conditional:
    condition: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapLit:
    entries: tuple[tuple[Node, Node], ...]


Node = (Literal | Ident | Select | Index | Call | Unary | Binary | Conditional | ListLit
        | MapLit)

_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<string>[rRbB]{0,2}(?:'''(?:[^\\]|\\.)*?'''|\"\"\"(?:[^\\]|\\.)*?\"\"\"
                          |'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"))
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?[uU]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!+\-*/%?:.,\[\](){}])
""", re.VERBOSE | re.DOTALL)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_RELATIONS = ("==", "!=", "<", "<=", ">", ">=", "in")


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise Unsupported(f"unexpected {text[at]!r} at column {at + 1}")
        at = match.end()
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group()))
    return tokens


def _number(text: str) -> Literal:
    if text[-1] in "uU":
        return Literal("uint", int(text[:-1], 0))
    if text.lower().startswith("0x"):
        return Literal("int", int(text, 16))
    if any(c in text for c in ".eE"):
        return Literal("double", float(text))
    return Literal("int", int(text))


def _string(text: str) -> Literal:
    prefix = text[:len(text) - len(text.lstrip("rRbB"))].lower()
    body = text[len(prefix):]
    quote = 3 if body[:3] in ("'''", '"""') else 1
    body = body[quote:-quote]
    if "r" not in prefix:
        body = _ESCAPE.sub(lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), body)
    return Literal("bytes" if "b" in prefix else "string", body)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise Unsupported("unexpected end of expression")
        token = self.tokens[self.at]
        if expected is not None and token[1] != expected:
            raise Unsupported(f"expected {expected!r}, found {token[1]!r}")
        self.at += 1
        return token

    def expr(self) -> Node:
        condition = self.binary(0)
        if self.peek() != "?":
            return condition
        self.take("?")
        then = self.binary(0)
        self.take(":")
        return Conditional(condition, then, self.expr())

    _LEVELS: tuple[tuple[str, ...], ...] = (("||",), ("&&",), _RELATIONS, ("+", "-"),
                                            ("*", "/", "%"))

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in self._LEVELS[level]:
            op = self.take()[1]
            left = Binary(op, left, self.binary(level + 1))
        return left

    def unary(self) -> Node:
        if self.peek() in ("!", "-"):
            op = self.take()[1]
            operand = self.unary()
            if op == "-" and isinstance(operand, Literal) and operand.kind in ("int", "double"):
                return Literal(operand.kind, -operand.value)  # type: ignore[operator]  # a number
            return Unary(op, operand)
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while self.peek() in (".", "["):
            if self.take()[1] == "[":
                node = Index(node, self.expr())
                self.take("]")
                continue
            kind, name = self.take()
            if kind != "ident":
                raise Unsupported(f"unexpected {name!r} after '.'")
            node = Call(name, node, self.args()) if self.peek() == "(" else Select(node, name)
        return node

    def args(self) -> tuple[Node, ...]:
        self.take("(")
        return self.sequence(")")

    def sequence(self, end: str) -> tuple[Node, ...]:
        items: list[Node] = []
        while self.peek() != end:
            items.append(self.expr())
            if self.peek() != end:
                self.take(",")
        self.take(end)
        return tuple(items)

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "number":
            return _number(text)
        if kind == "string":
            return _string(text)
        if kind == "ident":
            if text in ("true", "false"):
                return Literal("bool", text == "true")
            if text == "null":
                return Literal("null", None)
            if self.peek() == "{":
                raise Unsupported("message construction")
            return Call(text, None, self.args()) if self.peek() == "(" else Ident(text)
        if text == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if text == "[":
            return ListLit(self.sequence("]"))
        if text == "{":
            return MapLit(self.entries())
        raise Unsupported(f"unexpected {text!r}")

    def entries(self) -> tuple[tuple[Node, Node], ...]:
        entries: list[tuple[Node, Node]] = []
        while self.peek() != "}":
            key = self.expr()
            self.take(":")
            entries.append((key, self.expr()))
            if self.peek() != "}":
                self.take(",")
        self.take("}")
        return tuple(entries)


def parse(text: str) -> Node:
    """The syntax tree of ``text``; ``Unsupported`` outside the known subset."""
    parser = _Parser(text)
    node = parser.expr()
    if parser.peek() is not None:
        raise Unsupported(f"unexpected {parser.peek()!r}")
    return node
