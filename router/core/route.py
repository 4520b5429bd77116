"""Stage 3: which routes receive a message, by type and by CEL ``when`` expression.

Routes are compiled once per configuration.  ``Router.select`` is pure: given a
decoded message and its envelope it returns every ``Copy`` to publish, one per
destination of each matching route (fan-out), plus one for the alternative a
route's strategy picks and one per shadow (``router.config.branching``,
``router.core.choose``; a least_loaded route decides on the frozen ``LoadView``
passed in).

A ``when`` expression sees three variables: ``message`` (the JSON body),
``headers`` (AMQP headers; bytes decoded as UTF-8 where they are text) and
``properties`` (the AMQP properties by name: ``type``, ``message_id``,
``user_id``, ``app_id``, ``priority``, ``timestamp``...) and ``event`` (a
CloudEvent's attributes: ``source``, ``subject``, extensions...).  An expression that
errors at run time (a missing field, a type mismatch) does not match: CEL's
own rule is that an error is not ``true``.  Use ``has(message.field)`` to test
for optional fields.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import cel

from router.config.branching import Draw, branch_copies, compile_alternatives, versions
from router.config.schemas import SchemaRegistry
from router.config.topology import RouteSpec, Topology, is_glob
from router.core.choose import NO_VIEW, Alternatives, LoadView, digest
from router.core.envelope import Envelope
from router.core.outcome import Copy, Decoded
from router.errors import Problem

__all__ = [
    "CompiledRoute", "Router", "activation", "check_versions", "compile_routes", "message_fields",
]

VARIABLES = frozenset({"message", "headers", "properties", "event"})  # event: CloudEvents
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
_MESSAGE = re.compile(r"\bmessage\b")
_FIELD = re.compile(r"""\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*"([^"\\]*)"\s*\]|\[\s*'([^'\\]*)'\s*\])""")


def message_fields(source: str) -> frozenset[str] | None:
    """The top-level body fields an expression reads, or None if it may read any.

    Handing CEL only those fields is the same to the expression and saves
    converting the whole body (about 18 µs for a 300-byte order here).  Any
    use of ``message`` other than ``message.f`` / ``message["f"]`` (including
    the word inside a string literal) conservatively means the whole body.
    """
    fields: set[str] = set()
    for use in _MESSAGE.finditer(source):
        if source[:use.start()].rstrip().endswith("."):
            continue  # ``x.message`` is a field of something else
        access = _FIELD.match(source, use.end())
        if access is None:
            return None
        fields.add(next(g for g in access.groups() if g is not None))
    return frozenset(fields)


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    spec: RouteSpec
    program: Any  # cel.Program or None
    needs: frozenset[str] = frozenset()  # which of message/headers/properties it reads
    fields: frozenset[str] | None = frozenset()  # top-level body fields; None: all
    alternatives: Alternatives | None = None  # one of them gets each copy
    key: Any = None  # cel.Program of the choice's ``key``, or None

    def matches(self, activation: Any) -> bool:
        """True when the route has no ``when``, or its expression evaluates to ``true``."""
        if self.program is None:
            return True
        try:
            return self.program.execute(activation) is True
        except Exception:  # noqa: BLE001 -- CEL: an evaluation error is "no match" (see module doc)
            return False

    def copies(self, message_type: str, draw: Draw | None = None) -> list[Copy]:
        """One copy per ``to`` destination, one for the alternative picked, one per shadow
        sampled (``draw``: what the message brings to that choice); the routing key
        defaults to the message type.  A route with a ``version`` marks its copies with
        it (``router.core.pipeline`` upcasts them)."""
        spec = self.spec
        copies = [Copy(spec.name, d.exchange,
                       d.routing_key if d.routing_key is not None else message_type,
                       spec.version)
                  for d in spec.to]
        if self.alternatives is not None or spec.shadows:
            copies += branch_copies(spec, self.alternatives, self.key,
                                    draw or Draw(message_type))
        return copies


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


def activation(message: Decoded, envelope: Envelope,
               needs: frozenset[str] = VARIABLES,
               fields: frozenset[str] | None = None) -> dict[str, Any]:
    """The variables a ``when`` expression sees (only those in ``needs``).

    With ``fields``, ``message`` holds just those top-level fields of the body.
    """
    variables: dict[str, Any] = {}
    if "message" in needs:
        body = message.body
        if fields is not None and isinstance(body, dict):
            body = {k: body[k] for k in fields if k in body}
        variables["message"] = body
    if "headers" in needs:
        variables["headers"] = _cel_value(dict(envelope.properties.headers))
    if "properties" in needs:
        variables["properties"] = _properties(message, envelope)
    if "event" in needs:  # a CloudEvent's attributes (core.cloudevent); {} for plain messages
        variables["event"] = _cel_value(dict(envelope.event or {}))
    return variables


def _properties(message: Decoded, envelope: Envelope) -> dict[str, Any]:
    p = envelope.properties
    properties = {
        "type": message.message_type, "message_id": p.message_id, "user_id": p.user_id,
        "app_id": p.app_id, "correlation_id": p.correlation_id, "reply_to": p.reply_to,
        "content_type": p.content_type, "priority": p.priority, "timestamp": p.timestamp,
        "delivery_mode": p.delivery_mode, "expiration": p.expiration,
        "routing_key": envelope.routing_key, "exchange": envelope.exchange,
    }
    return {k: v for k, v in properties.items() if v is not None}


@dataclass(frozen=True, slots=True)
class _Plan:
    """The routes for one message type and what their expressions read."""

    routes: tuple[CompiledRoute, ...]
    needs: frozenset[str]
    fields: frozenset[str] | None


def _plan(routes: tuple[CompiledRoute, ...]) -> _Plan:
    needs = frozenset().union(*(r.needs for r in routes))
    fields: frozenset[str] | None = frozenset()
    for route in routes:
        if fields is None or route.fields is None:
            fields = None
        elif "message" in route.needs:
            fields |= route.fields
    return _Plan(routes, needs, fields)


@dataclass(frozen=True)
class Router:
    """Routes in file order; the candidates for each message type are computed once."""

    routes: tuple[CompiledRoute, ...] = ()
    _plans: dict[str, _Plan] = field(default_factory=dict, repr=False)
    versioned: bool = False  # some route asks for a schema version (copies may be upcast)
    branching: bool = False  # some route has alternatives or shadows (needs the id's hash)
    load_aware: bool = False  # some route is least_loaded (needs a LoadView)

    def _plan_for(self, message_type: str) -> _Plan:
        plan = self._plans.get(message_type)
        if plan is None:
            plan = _plan(tuple(r for r in self.routes
                               if fnmatch.fnmatchcase(message_type, r.spec.message_type)))
            self._plans[message_type] = plan
        return plan

    def candidates(self, message_type: str) -> tuple[CompiledRoute, ...]:
        """Routes whose ``message_type`` (exact or glob) matches, in file order."""
        return self._plan_for(message_type).routes

    def select(self, message: Decoded, envelope: Envelope, view: LoadView = NO_VIEW,
               pin: tuple[str, str, str] | None = None) -> tuple[Copy, ...]:
        """Every copy to publish for this message (empty: no route matched).

        ``view`` is the queue loads and breakers least_loaded routes decide on;
        ``pin`` (route, exchange, routing key) keeps a retried copy on its branch."""
        plan = self._plan_for(message.message_type)
        if not plan.routes:
            return ()
        context: Any = None
        if plan.needs:
            # Converted to CEL values once, shared by every route's expression.
            context = cel.Context(activation(message, envelope, plan.needs, plan.fields))
        hashed = 0
        if self.branching:
            hashed = digest((envelope.properties.message_id or "").encode("utf-8",
                                                                          "surrogatepass")
                            or envelope.body)
        copies: list[Copy] = []
        for route in plan.routes:
            if route.matches(context):
                if route.alternatives is None and not route.spec.shadows:
                    copies.extend(route.copies(message.message_type))
                    continue
                pinned = pin[1:] if pin is not None and pin[0] == route.spec.name else None
                copies.extend(route.copies(message.message_type, Draw(
                    message.message_type, context, hashed, view, pinned)))
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


def _compile(source: str, what: str, line: int | None, file: str,
             problems: list[Problem]) -> Any:
    """A checked CEL program, or None with the problem recorded."""
    try:
        program = cel.compile(source)
    except ValueError as exc:
        detail = str(exc).split("\n", 1)[0]
        problems.append(Problem(file, f"{what}: CEL syntax error: {detail}", line))
        return None
    error = _check_expression(program, source)
    if error is not None:
        problems.append(Problem(file, f"{what}: {error}", line))
        return None
    return program


def _reads(program: Any, source: str | None) -> tuple[frozenset[str], frozenset[str] | None]:
    if program is None or source is None:
        return frozenset(), frozenset()
    return frozenset(program.variables()) & VARIABLES, message_fields(source)


def compile_routes(specs: tuple[RouteSpec, ...], file: str,
                   topology: Topology | None = None) -> tuple[Router, list[Problem]]:
    """Compile every ``when`` and choice ``key``; syntax errors and unknown names become
    problems.  ``topology`` tells least_loaded routes which queues their branches reach."""
    problems: list[Problem] = []
    compiled: list[CompiledRoute] = []
    for spec in specs:
        where = f"route {spec.name!r}"
        program = None
        if spec.when is not None:
            program = _compile(spec.when, where, spec.line, file, problems)
            if program is None:
                continue
        key_source = spec.choice.key if spec.choice is not None else None
        key = None
        if key_source is not None and spec.choice is not None:
            key = _compile(key_source, f"{where} key", spec.choice.key_line, file, problems)
            if key is None:
                continue
        needs, fields = _reads(program, spec.when)
        key_needs, key_fields = _reads(key, key_source)
        fields = None if fields is None or key_fields is None else fields | key_fields
        compiled.append(CompiledRoute(spec, program, needs | key_needs, fields,
                                      compile_alternatives(spec, topology), key))
    return Router(
        tuple(compiled),
        versioned=any(any(v is not None for v, _ in versions(r.spec)) for r in compiled),
        branching=any(r.alternatives is not None or r.spec.shadows for r in compiled),
        load_aware=any(r.alternatives is not None and r.alternatives.targets
                       for r in compiled),
    ), problems


def check_versions(specs: tuple[RouteSpec, ...], registry: SchemaRegistry,
                   file: str) -> list[Problem]:
    """A route's ``version`` must exist, and every older version must have a way to it.

    A step between two versions without an upcaster passes messages on
    unchanged; that is accepted only where the type's compatibility mode makes
    ``check`` prove it (backward, full and their transitive forms).
    """
    problems: list[Problem] = []
    for spec in specs:
        for version, line in versions(spec):
            if version is not None:
                problems += _check_version(spec, version, line, registry, file)
    return problems


def _check_version(spec: RouteSpec, version: int, line: int | None, registry: SchemaRegistry,
                   file: str) -> list[Problem]:
    where = f"route {spec.name!r}"
    if is_glob(spec.message_type):
        return [Problem(file, f"{where}: 'version' needs an exact message_type, "
                              f"not {spec.message_type!r}", line)]
    if spec.message_type not in registry:
        return []  # reported with the route's type
    found = registry.lookup(spec.message_type, version)
    if isinstance(found, str):
        return [Problem(file, f"{where}: {found}", line)]
    stranded = registry.lineage(spec.message_type).stranded(version)
    if not stranded:
        return []
    older = ", ".join(f"v{v}" for v in stranded)
    return [Problem(
        file, f"{where} asks for {spec.message_type} v{version}, but {older} "
              f"messages have no upcaster towards it: declare one in "
              f"schemas/{spec.message_type}/evolution.yaml (steps may be empty) or make "
              f"its compatibility backward so that check proves the step", line)]
