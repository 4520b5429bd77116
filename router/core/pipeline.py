"""The pure core: one envelope in, one ``Outcome`` out.

``original`` recognises a copy coming back from the retry tier; then
decode → validate → route → upcast.  No I/O, no clock, no randomness; the same
input always gives the same decision, which is what the unit tests pin.

A route with a ``version`` gets its copy in that schema version: an older
message is upcast (once per version, whatever the number of routes) and
validated against it.  A message newer than a route asks for, or an upcast
that fails or gives an invalid message, dead-letters that route's copy only, as
``schema_invalid`` naming the route (``Forward.unfit``): the router never
downcasts, the other routes get their copies, and replaying the dead letter
after the fix delivers the missing copy to its destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from router.config.lineage import Lineage
from router.config.schemas import SchemaRegistry
from router.config.snapshot import Config
from router.core.admission import admit, copy_overrides
from router.core.choose import NO_VIEW, LoadView
from router.core.decode import decode, encode_body, message_type_of
from router.core.envelope import Envelope
from router.core.ladder import Comeback, RetryState, restore, retry_state_of
from router.core.outcome import Copy, DeadCopy, DeadLetter, Decoded, Forward, Outcome, Reason
from router.core.route import select
from router.core.upcast import Failed, run
from router.core.validate import validate

__all__ = ["decide", "original"]


def original(envelope: Envelope, router_user: str | None) -> tuple[Envelope, Comeback | None]:
    """The message as first published, and its retry state if the router parked it
    (only a message whose broker-validated ``user_id`` is the router's can be one)."""
    if router_user is None or envelope.properties.user_id != router_user:
        return envelope, None
    state = retry_state_of(envelope, router_user)
    return (envelope, None) if state is None else (restore(envelope, state), state)


def decide(envelope: Envelope, config: Config, retry: Comeback | None = None,
           view: LoadView = NO_VIEW) -> Outcome:
    """What to do with ``envelope`` under ``config``.

    A copy back from the retry tier (``retry``) is checked and routed again like
    any message, then only the copy that failed is forwarded: a copy to one of a
    route's alternatives keeps its branch while the route still has it, and
    takes the route's choice of today when a reload removed it.  ``view`` is
    what least_loaded routes know of their queues and breakers.
    """
    if envelope.defects:  # properties that did not decode or cannot be sent on (router.broker.wire)
        return DeadLetter(Reason.MALFORMED, "; ".join(envelope.defects),
                          message_type_of(envelope))
    policies = config.policies
    refused = admit(envelope, message_type_of(envelope), policies.authorization, policies.limits)
    if refused is not None:
        return refused
    decoded = decode(envelope)
    if isinstance(decoded, DeadLetter):
        return decoded
    valid = validate(decoded, config.registry)
    if isinstance(valid, DeadLetter):
        return valid
    pinned = retry if isinstance(retry, RetryState) else None  # one copy, not a shaped whole
    pin = (pinned.route, pinned.exchange, pinned.routing_key) if pinned else None
    copies = select(config.router, valid, envelope, view, pin)
    dropped: tuple[tuple[Copy, str], ...] = ()
    unfit: tuple[DeadCopy, ...] = ()
    if config.router.versioned and any(c.version is not None for c in copies):
        copies, dropped, unfit = _versioned(valid, copies, config.registry)
    overrides = copy_overrides(valid.message_type, policies.limits, policies.priority,
                               envelope.properties.expiration)
    if pinned is not None:
        return _pinned(valid, copies, pinned, overrides, unfit)
    if not copies and not unfit:
        return DeadLetter(Reason.UNROUTABLE, f"no route matches message type "
                                             f"{valid.message_type!r}", valid.message_type)
    return Forward(valid, copies, None, overrides, dropped, unfit)


def _pinned(valid: Decoded, copies: tuple[Copy, ...], retry: RetryState,
            overrides: Mapping[str, Any], unfit: tuple[DeadCopy, ...]) -> Outcome:
    """Only the copy that failed, back from the retry tier (or why it cannot be had)."""
    wanted = Copy(retry.route, retry.exchange, retry.routing_key)
    failed = next((d for d in unfit if d.route == retry.route), None)
    if failed is not None:  # its version cannot be had now: its own dead letter
        return failed
    real = [c for c in copies if not c.shadow]
    found = next((c for c in real if c.target == wanted.target), None)
    if found is None and retry.branch is not None:  # its alternative is gone: today's
        found = next((c for c in real if c.route == retry.route and c.branch), None)
    if found is None:
        return DeadCopy(Reason.UNROUTABLE, f"route {retry.route!r} no longer sends this "
                                           f"message to {retry.exchange!r} "
                                           f"[{retry.routing_key}]",
                        valid.message_type, wanted)
    return Forward(valid, (found,), retry, overrides)


Versioned = tuple[tuple[Copy, ...], tuple[tuple[Copy, str], ...], tuple[DeadCopy, ...]]


def _versioned(message: Decoded, copies: tuple[Copy, ...],
               registry: SchemaRegistry) -> Versioned:
    """Every copy in the version its route asks for; the copies that cannot be had.

    A real copy that cannot be had in its version becomes its own dead letter
    (naming its route and destination), never the message's; a shadow copy is
    dropped (with why): each copy's trouble is its own."""
    lineage = registry.lineage(message.message_type)
    current = message.version if message.version is not None else lineage.versions[-1]
    bodies: dict[int, bytes | DeadLetter | None] = {}
    versioned: list[Copy] = []
    dropped: list[tuple[Copy, str]] = []
    unfit: list[DeadCopy] = []
    for copy in copies:
        if copy.version is None:
            versioned.append(copy)
            continue
        if copy.version not in bodies:
            bodies[copy.version] = _upcast(message, current, copy, lineage, registry)
        body = bodies[copy.version]
        if isinstance(body, DeadLetter):
            if copy.shadow:
                dropped.append((copy, body.error))
            else:
                unfit.append(DeadCopy(body.reason, body.error, body.message_type, copy))
            continue
        versioned.append(replace(copy, body=body))
    return tuple(versioned), tuple(dropped), tuple(unfit)


def _upcast(message: Decoded, current: int, copy: Copy, lineage: Lineage,
            registry: SchemaRegistry) -> bytes | DeadLetter | None:
    """The body of ``copy`` in its version (None: the published bytes), validated."""
    wanted, name = copy.version, message.message_type
    if wanted is None or wanted == current:
        return None
    where = f"route {copy.route!r} asks for {name} v{wanted}"
    if wanted < current:
        return DeadLetter(Reason.SCHEMA_INVALID, f"{where} but the message is v{current}: "
                                                 "the router does not downcast", name)
    result = run(lineage.chain(current, wanted), message.body)
    if isinstance(result, Failed):
        return DeadLetter(Reason.SCHEMA_INVALID, f"{where}: {result.reason}", name)
    checked = validate(Decoded(name, wanted, result), registry)
    if isinstance(checked, DeadLetter):
        return DeadLetter(Reason.SCHEMA_INVALID, f"{where}: the upcast from v{current} is not "
                                                 f"valid: {checked.error}", name)
    try:
        return encode_body(result)
    except (TypeError, ValueError) as exc:
        return DeadLetter(Reason.SCHEMA_INVALID, f"{where}: the upcast from v{current} is not "
                                                 f"JSON: {exc}", name)
