"""Which handler takes a delivery, or why none does (pure).

A delivery is decoded and validated exactly as the router does it
(``router.core.decode`` and ``router.core.validate`` over the same schema registry),
then dispatched by its ``type``:

* not JSON, bad headers → ``malformed``; a type or version the registry does
  not know, or a body that fails its schema → ``unknown_type`` /
  ``schema_invalid``.  Never retried: the input will not get better.
* no handler for the type, or the handler does not accept that schema
  version → ``unhandled``, with a warning.  The queue receives something the
  service was not written for (a binding wider than its handlers, or a new
  version): the message is kept in the dead-letter queue, where ``dlq replay``
  brings it back once a handler exists, instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from router.config.cloudevents_spec import CloudEventsSpec
from router.config.keyring import Keyring
from router.config.policies import RetryPolicy
from router.config.reach import queues_reached
from router.config.schemas import SchemaRegistry
from router.config.topology import Topology, is_glob
from router.core import headers as xmcp
from router.core.cloudevent import ingest
from router.core.decode import decode
from router.core.envelope import Envelope, text_value
from router.core.fieldcrypt import DecryptError
from router.core.outcome import DeadLetter, Decoded, Reason
from router.core.validate import validate
from router.sdk.sealed import open_fields

__all__ = ["Context", "Dispatch", "Handler", "Reading", "Refuse", "Registration", "context_of",
           "dispatch", "policy_of", "unhandled_routes"]


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler knows about the delivery besides its body."""

    message_id: str | None
    message_type: str
    version: int | None  # the schema version the body was validated against
    headers: Mapping[str, Any]
    attempt: int  # 1 for the first call; counts every attempt, broker rounds included
    queue: str
    redelivered: bool = False
    correlation_id: str | None = None
    publisher: str | None = None  # the broker user that published it (x-mcp-publisher)
    route: str | None = None  # the router's route that delivered it (x-mcp-route)


Handler = Callable[[Any, Context], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Registration:
    """One handler: the type it handles, the schema versions it accepts (empty: any)."""

    message_type: str
    handler: Handler
    versions: frozenset[int] = field(default_factory=frozenset)
    retry: RetryPolicy | None = None  # None: the service's policy
    sealed: bool = False  # takes sensitive fields sealed, as they came (router.sdk.sealed)

    def accepts(self, version: int | None) -> bool:
        return not self.versions or version in self.versions


def policy_of(registration: Registration | None, default: RetryPolicy) -> RetryPolicy:
    """The retry policy a handler runs under: its own, else the service's ``default``."""
    return (registration.retry if registration else None) or default


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Call ``registration.handler`` with ``message.body``."""

    registration: Registration
    message: Decoded
    version: int | None


@dataclass(frozen=True, slots=True)
class Refuse:
    """Dead-letter at once with ``reason``; no handler is called."""

    reason: Reason
    error: str
    message_type: str | None


def _effective_version(message: Decoded, registry: SchemaRegistry | None) -> int | None:
    """The header's version, else the newest the registry knows (what validation used)."""
    if message.version is not None or registry is None:
        return message.version
    schema = registry.lookup(message.message_type, None)
    return None if isinstance(schema, str) else schema.version


@dataclass(frozen=True)
class Reading:
    """How a delivery is read before dispatch: CloudEvents mapped, sealed fields opened."""

    keyring: Keyring | None = None  # opens sealed sensitive fields (router.sdk.sealed)
    cloudevents: CloudEventsSpec | None = None  # the topology's CloudEvents mapping


PLAIN = Reading()


def dispatch(
        envelope: Envelope, handlers: Mapping[str, Registration],
        registry: SchemaRegistry | None, service: str, *,
        reading: Reading = PLAIN) -> Dispatch | Refuse:
    """The handler for ``envelope``, or the dead-letter reason; never raises.

    A CloudEvent is read as the router reads it; sealed sensitive fields are
    opened with ``reading.keyring`` (``router.sdk.sealed``)."""
    keyring, cloudevents = reading.keyring, reading.cloudevents
    if envelope.defects:  # properties that cannot be sent on (router.broker.encodable)
        return Refuse(Reason.MALFORMED, "; ".join(envelope.defects), envelope.properties.type)
    inbound = ingest(envelope, cloudevents or CloudEventsSpec())
    if isinstance(inbound, DeadLetter):
        return Refuse(inbound.reason, inbound.error, inbound.message_type)
    decoded = decode(inbound.message)
    if isinstance(decoded, DeadLetter):
        return Refuse(decoded.reason, decoded.error, decoded.message_type)
    registration = handlers.get(decoded.message_type)
    if registration is None:
        return Refuse(Reason.UNHANDLED, f"{service} has no handler for {decoded.message_type}",
                      decoded.message_type)
    if registry is not None:
        checked = validate(decoded, registry)
        if isinstance(checked, DeadLetter):
            return Refuse(checked.reason, checked.error, decoded.message_type)
        decoded = checked
    version = _effective_version(decoded, registry)
    if not registration.accepts(version):
        accepted = ", ".join(f"v{v}" for v in sorted(registration.versions))
        return Refuse(Reason.UNHANDLED, f"{service} handles {decoded.message_type} "
                                        f"{accepted}, not v{version}", decoded.message_type)
    marks = registry.marks(decoded.message_type, version) if registry is not None else ()
    if marks and not registration.sealed:
        try:
            opened = open_fields(decoded.body, marks, keyring, decoded.message_type)
        except DecryptError as exc:
            return Refuse(Reason.HANDLER_FAILED, str(exc), decoded.message_type)
        decoded = replace(decoded, body=opened)
    return Dispatch(registration, decoded, version)


def context_of(envelope: Envelope, dispatched: Dispatch, *, queue: str,
               attempt: int) -> Context:
    """The handler's ``Context`` for one attempt."""
    p = envelope.properties
    return Context(
        message_id=p.message_id, message_type=dispatched.message.message_type,
        version=dispatched.version, headers=p.headers, attempt=attempt, queue=queue,
        redelivered=envelope.redelivered, correlation_id=p.correlation_id,
        publisher=text_value(p.headers.get(xmcp.PUBLISHER)),
        route=text_value(p.headers.get(xmcp.ROUTE)))


def unhandled_routes(topology: Topology, queue: str, handled: Iterable[str]) -> list[str]:
    """Each route whose copies reach ``queue`` with a type no handler takes, as a warning.

    Routes on a glob (``Order*``, ``*``) are left out: which types they carry
    depends on what is published.
    """
    types = set(handled)
    found = []
    for route in topology.routes:
        if is_glob(route.message_type) or route.message_type in types:
            continue
        if any(queue in queues_reached(topology, d.exchange, d.routing_key or route.message_type)
               for d in route.destinations()):
            found.append(f"route {route.name!r} sends {route.message_type} to {queue}, "
                         "which has no handler for it: such messages are dead-lettered as "
                         "unhandled")
    return found
