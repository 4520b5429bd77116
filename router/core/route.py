"""Stage 3: which routes receive a message, by type and by CEL ``when`` expression.

Routes are compiled once per configuration (``router.config.route_table``).
``select`` is pure: given the route table, a decoded message and its envelope it
returns every ``Copy`` to publish, one per destination of each matching route
(fan-out), plus one for the alternative a route's strategy picks and one per
shadow (``router.core.choose``; a least_loaded route decides on the frozen
``LoadView`` passed in).

A ``when`` expression sees ``message`` (the JSON body), ``headers`` (AMQP
headers; bytes decoded as UTF-8 where they are text), ``properties`` (the AMQP
properties by name: ``type``, ``message_id``, ``user_id``, ``app_id``,
``priority``, ``timestamp``...) and ``event`` (a CloudEvent's attributes:
``source``, ``subject``, extensions...).  An expression that errors at run time
(a missing field, a type mismatch) does not match: CEL's own rule is that an
error is not ``true``.  Use ``has(message.field)`` to test for optional fields.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import cel

from router.config.route_table import VARIABLES, CompiledRoute, RouteTable
from router.core.choose import NO_VIEW, Draw, LoadView, branch_copies, digest
from router.core.envelope import Envelope
from router.core.outcome import Copy, Decoded

__all__ = ["activation", "matches", "route_copies", "select"]


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


def matches(route: CompiledRoute, context: Any) -> bool:
    """True when the route has no ``when``, or its expression evaluates to ``true``."""
    if route.program is None:
        return True
    try:
        return route.program.execute(context) is True
    except Exception:  # noqa: BLE001 - CEL: an evaluation error is "no match" (see module doc)
        return False


def route_copies(route: CompiledRoute, message_type: str, draw: Draw | None = None) -> list[Copy]:
    """One copy per ``to`` destination, one for the alternative picked, one per shadow
    sampled (``draw``: what the message brings to that choice); the routing key
    defaults to the message type.  A route with a ``version`` marks its copies with
    it (``router.core.pipeline`` upcasts them)."""
    spec = route.spec
    copies = [Copy(spec.name, d.exchange,
                   d.routing_key if d.routing_key is not None else message_type,
                   spec.version)
              for d in spec.to]
    if route.alternatives is not None or spec.shadows:
        copies += branch_copies(spec, route.alternatives, route.key, draw or Draw(message_type))
    return copies


def select(table: RouteTable, message: Decoded, envelope: Envelope, view: LoadView = NO_VIEW,
           pin: tuple[str, str, str] | None = None) -> tuple[Copy, ...]:
    """Every copy to publish for this message (empty: no route matched).

    ``view`` is the queue loads and breakers least_loaded routes decide on;
    ``pin`` (route, exchange, routing key) keeps a retried copy on its branch."""
    candidates = table.candidates_for(message.message_type)
    if not candidates.routes:
        return ()
    context: Any = None
    if candidates.needs:
        # Converted to CEL values once, shared by every route's expression.
        context = cel.Context(activation(message, envelope, candidates.needs,
                                         candidates.fields))
    hashed = 0
    if table.branching:
        hashed = digest((envelope.properties.message_id or "").encode("utf-8", "surrogatepass")
                        or envelope.body)
    copies: list[Copy] = []
    for route in candidates.routes:
        if matches(route, context):
            if route.alternatives is None and not route.spec.shadows:
                copies.extend(route_copies(route, message.message_type))
                continue
            pinned = pin[1:] if pin is not None and pin[0] == route.spec.name else None
            copies.extend(route_copies(route, message.message_type, Draw(
                message.message_type, context, hashed, view, pinned)))
    return tuple(copies)
