"""Stage 3: which routes receive a message, by type and by CEL ``when`` expression.

Routes are compiled once per configuration.  ``Router.select`` is pure: given a
decoded message and its envelope it returns every ``Copy`` to publish, one per
destination of each matching route (fan-out).

A ``when`` expression sees three variables: ``message`` (the JSON body),
``headers`` (AMQP headers; bytes decoded as UTF-8 where they are text) and
``properties`` (the AMQP properties by name: ``type``, ``message_id``,
``user_id``, ``app_id``, ``priority``, ``timestamp``...).  An expression that
errors at run time (a missing field, a type mismatch) does not match: CEL's
own rule is that an error is not ``true``.  Use ``has(message.field)`` to test
for optional fields.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import cel

from router.envelope import Envelope
from router.errors import Problem
from router.outcome import Copy, Decoded
from router.topology import RouteSpec

__all__ = ["CompiledRoute", "Router", "compile_routes"]

VARIABLES = frozenset({"message", "headers", "properties"})
# CEL standard definitions and the string/timestamp helpers this CEL build provides.
FUNCTIONS = frozenset({
    "size", "matches", "startsWith", "endsWith", "contains", "int", "uint", "double",
    "string", "bytes", "bool", "timestamp", "duration", "dyn", "type", "has", "exists",
    "all", "map", "filter", "exists_one", "getFullYear", "getMonth", "getDate",
    "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getHours", "getMinutes", "getSeconds",
    "getMilliseconds", "lowerAscii", "upperAscii", "trim", "split", "join", "replace",
    "indexOf", "lastIndexOf", "substring", "charAt", "max", "min",
})
_BOUND = re.compile(r"\.\s*(?:exists|all|map|filter|exists_one)\s*\(\s*([A-Za-z_]\w*)\s*,")


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    spec: RouteSpec
    program: Any  # cel.Program or None

    def matches(self, activation: Mapping[str, Any]) -> bool:
        """True when the route has no ``when``, or its expression evaluates to ``true``."""
        if self.program is None:
            return True
        try:
            return self.program.execute(activation) is True
        except Exception:  # noqa: BLE001 -- CEL: an evaluation error is "no match" (see module doc)
            return False

    def copies(self, message_type: str) -> list[Copy]:
        """One copy per destination; the routing key defaults to the message type."""
        return [
            Copy(self.spec.name, d.exchange,
                 d.routing_key if d.routing_key is not None else message_type)
            for d in self.spec.to
        ]


def _cel_value(value: Any) -> Any:
    """Make an AMQP header value something CEL can hold."""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _cel_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_cel_value(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool | datetime):
        return value
    return str(value)


def activation(message: Decoded, envelope: Envelope) -> dict[str, Any]:
    """The variables a ``when`` expression sees."""
    p = envelope.properties
    properties = {
        "type": message.message_type, "message_id": p.message_id, "user_id": p.user_id,
        "app_id": p.app_id, "correlation_id": p.correlation_id, "reply_to": p.reply_to,
        "content_type": p.content_type, "priority": p.priority, "timestamp": p.timestamp,
        "delivery_mode": p.delivery_mode, "expiration": p.expiration,
        "routing_key": envelope.routing_key, "exchange": envelope.exchange,
    }
    return {
        "message": message.body,
        "headers": _cel_value(dict(p.headers)),
        "properties": {k: v for k, v in properties.items() if v is not None},
    }


@dataclass(frozen=True)
class Router:
    """Routes in file order; the candidates for each message type are computed once."""

    routes: tuple[CompiledRoute, ...] = ()
    _by_type: dict[str, tuple[CompiledRoute, ...]] = field(default_factory=dict, repr=False)

    def candidates(self, message_type: str) -> tuple[CompiledRoute, ...]:
        """Routes whose ``message_type`` (exact or glob) matches, in file order."""
        found = self._by_type.get(message_type)
        if found is None:
            found = tuple(r for r in self.routes
                          if fnmatch.fnmatchcase(message_type, r.spec.message_type))
            self._by_type[message_type] = found
        return found

    def select(self, message: Decoded, envelope: Envelope) -> tuple[Copy, ...]:
        """Every copy to publish for this message (empty: no route matched)."""
        candidates = self.candidates(message.message_type)
        if not candidates:
            return ()
        variables = (activation(message, envelope)
                     if any(r.program is not None for r in candidates) else {})
        copies: list[Copy] = []
        for route in candidates:
            if route.matches(variables):
                copies.extend(route.copies(message.message_type))
        return tuple(copies)


def _check_expression(program: Any, source: str) -> str | None:
    bound = set(_BOUND.findall(source))
    unknown_vars = sorted(set(program.variables()) - VARIABLES - bound)
    if unknown_vars:
        return (f"unknown variable {unknown_vars[0]!r} "
                f"(a 'when' sees {', '.join(sorted(VARIABLES))})")
    unknown_fns = sorted(f for f in program.functions()
                         if f[0].isalpha() and f not in FUNCTIONS)
    if unknown_fns:
        return f"unknown function {unknown_fns[0]!r}"
    return None


def compile_routes(specs: tuple[RouteSpec, ...], file: str) -> tuple[Router, list[Problem]]:
    """Compile every ``when``; syntax errors and unknown names become problems."""
    problems: list[Problem] = []
    compiled: list[CompiledRoute] = []
    for spec in specs:
        program = None
        if spec.when is not None:
            try:
                program = cel.compile(spec.when)
            except ValueError as exc:
                detail = str(exc).split("\n", 1)[0]
                problems.append(Problem(file, f"route {spec.name!r}: CEL syntax error: {detail}",
                                        spec.line))
                continue
            error = _check_expression(program, spec.when)
            if error is not None:
                problems.append(Problem(file, f"route {spec.name!r}: {error}", spec.line))
                continue
        compiled.append(CompiledRoute(spec, program))
    return Router(tuple(compiled)), problems
