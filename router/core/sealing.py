"""From a delivery to what settlement carries out: CloudEvents read, decided, fields sealed.

``prepare`` runs the stages around the pure decision: ``router.core.cloudevent``
reads an event into the message it carries, ``router.core.pipeline.decide``
decides on that message, and then each copy gets its own body and form:

* a copy whose route or destination the ``encryption`` policy does not
  entitle has every sensitive field of its body sealed (AES-256-GCM under the
  active data key); an entitled copy keeps the body as published (a value the
  publisher sealed stays sealed: the router never decrypts);
* a copy whose route asks for a CloudEvents ``format`` gets its ``Form``.

The envelope handed on is the delivery as it came (``Inbound.wire``) with the
body every dead letter of it carries: sensitive fields sealed, in the same
content mode, so ``dlq replay`` republishes it without decrypting anything.

What the router parks in its own queues (a copy waiting for a retry, a whole
message held back by rate shaping) is ``parked_body``: every plain sensitive
value sealed *as parked* (``Purpose.PARKED``).  When the router takes its own
parked message back (``retry``, believed from its broker-validated user id),
``prepare`` opens exactly those values first, so the message is validated,
routed, sealed per copy and dead-lettered as on its first delivery, and an
entitled route still gets plain values; a value the publisher sealed stays
sealed, as always.

The ingress queue would dead-letter a message at its delivery limit as it was
published.  At the last delivery the queue allows (``x-delivery-count``, from the
broker on a redelivery) a message whose type has sensitive fields is therefore
dead-lettered by the router instead, reason ``delivery_limit``, sealed.  The
nonces are passed in: the same inputs give the same result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from router.config.cloudevents_spec import Mode
from router.config.keyring import Keyring
from router.config.sensitive_marks import Marks
from router.config.snapshot import Config
from router.core.choose import NO_VIEW, LoadView
from router.core.cloudevent import Inbound, ingest
from router.core.decode import decode, encode_body, parse_body
from router.core.envelope import Envelope
from router.core.eventform import form_for, structured_body
from router.core.fieldcrypt import Nonces, Purpose
from router.core.ladder import Comeback
from router.core.outcome import Copy, DeadLetter, Decoded, Forward, Outcome, Reason
from router.core.pipeline import decide
from router.core.sensitive import redacted, reopen, seal

__all__ = ["Prepared", "Sealer", "SealingUnavailable", "decide_inbound", "last_delivery",
           "parked_body", "prepare", "shown"]


class SealingUnavailable(RuntimeError):
    """A message has sensitive fields and no data key is there to seal them."""


@dataclass(frozen=True)
class Sealer:
    """The data keys (the active one seals) and where nonces come from."""

    keyring: Keyring
    nonces: Nonces

    def seal(self, body: Any, marks: Marks, purpose: Purpose = Purpose.COPY) -> bytes:
        if self.keyring.active is None:
            raise SealingUnavailable("no active data key to seal sensitive fields with")
        return encode_body(seal(body, marks, self.keyring, self.nonces, purpose))


@dataclass(frozen=True, slots=True)
class Prepared:
    outcome: Outcome
    envelope: Envelope  # what settlement publishes from: the delivery as it came, dead_body set


def decide_inbound(envelope: Envelope, config: Config, retry: Comeback | None = None,
                   view: LoadView = NO_VIEW) -> tuple[Outcome, Inbound | None]:
    """The decision on the message inside ``envelope`` (a CloudEvent is read first)."""
    inbound = ingest(envelope, config.topology.cloudevents)
    if isinstance(inbound, DeadLetter):
        return inbound, None
    return decide(inbound.message, config, retry, view), inbound


def prepare(envelope: Envelope, config: Config, retry: Comeback | None = None,
            sealer: Sealer | None = None, view: LoadView = NO_VIEW) -> Prepared:
    """The outcome to settle and the envelope to settle it with.

    ``retry`` (the router's own parked message back) has the values sealed to park it
    opened first; a message at its last delivery with sensitive fields is a sealed
    ``delivery_limit`` dead letter, undecided."""
    if retry is not None:
        envelope = _reopened(envelope, config, sealer)
    else:
        poisoned = _poisoned(envelope, config, sealer)
        if poisoned is not None:
            return poisoned
    outcome, inbound = decide_inbound(envelope, config, retry, view)
    if inbound is None:
        return Prepared(outcome, envelope)
    message = outcome.message if isinstance(outcome, Forward) else _decoded(inbound)
    marks = config.registry.marks(message.message_type, message.version) if message else ()
    wire = inbound.wire
    sealed: dict[int | None, bytes] = {}  # sealed bodies by the version their copies ask for
    if message is not None and marks:
        sealed[None] = _sealer(sealer).seal(message.body, marks)
        wire = replace(wire, dead_body=_wire_body(inbound, sealed[None]))
    if isinstance(outcome, Forward):
        copies = _copies(outcome, inbound, config, sealer, sealed)
        if copies != outcome.copies:
            outcome = replace(outcome, copies=copies)
    return Prepared(outcome, wire)


def _sealer(sealer: Sealer | None) -> Sealer:
    if sealer is None:
        raise SealingUnavailable("this message has sensitive fields but the router has no "
                                 "data keys (set MCP_KEK_FILE or MCP_KEK)")
    return sealer


def _decoded(inbound: Inbound) -> Decoded | None:
    decoded = decode(inbound.message)
    return None if isinstance(decoded, DeadLetter) else decoded


def _wire_body(inbound: Inbound, data: bytes) -> bytes:
    """``data`` in the content mode the message came in."""
    if inbound.event is not None and inbound.event.mode is Mode.STRUCTURED:
        return structured_body(inbound.event.attributes, data)
    return data


def _copies(forward: Forward, inbound: Inbound, config: Config, sealer: Sealer | None,
            sealed: dict[int | None, bytes]) -> tuple[Copy, ...]:
    """Each copy with its body (sealed unless entitled) and its CloudEvents form."""
    message, registry = forward.message, config.registry
    formats = {r.name: r.format for r in config.topology.routes if r.format != "as-is"}
    encryption = config.policies.encryption
    copies = []
    for copy in forward.copies:
        schema = registry.lookup(message.message_type,
                                 copy.version if copy.version is not None else message.version)
        version = None if isinstance(schema, str) else schema.version
        marks = () if isinstance(schema, str) else schema.marks
        body = copy.body
        if marks and not encryption.entitled(copy.route, copy.exchange, copy.routing_key):
            if copy.version not in sealed:
                plain = message.body if copy.body is None else parse_body(copy.body)
                sealed[copy.version] = _sealer(sealer).seal(plain, marks)
            body = sealed[copy.version]
        form = form_for(formats.get(copy.route, "as-is"), inbound,
                        Decoded(message.message_type, version, message.body),
                        config.topology.cloudevents,
                        changed=body is not None)
        if form is not None and body is None:
            body = inbound.message.body  # the data, to be presented in its form
        unchanged = body is copy.body and form is None
        copies.append(copy if unchanged else replace(copy, body=body, form=form))
    return tuple(copies)


def _sensitive(envelope: Envelope, config: Config) -> tuple[Inbound, Decoded, Marks] | None:
    """The message in ``envelope`` when its type has sensitive fields and its body decodes."""
    inbound = ingest(envelope, config.topology.cloudevents)
    if isinstance(inbound, DeadLetter):
        return None
    message = _decoded(inbound)
    marks = config.registry.marks(message.message_type, message.version) if message else ()
    return (inbound, message, marks) if message is not None and marks else None


def parked_body(envelope: Envelope, config: Config, sealer: Sealer | None) -> bytes:
    """The body to park ``envelope`` (as ``prepare`` handed it on) with in the router's own
    retry or shaping queue: every plain sensitive value sealed as parked, in the message's
    content mode; the body as it is when nothing needs sealing.  Never plain when it has
    sensitive values: ``SealingUnavailable`` without data keys."""
    found = _sensitive(envelope, config)
    if found is None:
        return envelope.body
    inbound, message, marks = found
    sealer = _sealer(sealer)
    if sealer.keyring.active is None:
        raise SealingUnavailable("no active data key to seal sensitive fields with")
    parked = seal(message.body, marks, sealer.keyring, sealer.nonces, Purpose.PARKED)
    return envelope.body if parked == message.body else \
        _wire_body(inbound, encode_body(parked))


def _reopened(envelope: Envelope, config: Config, sealer: Sealer | None) -> Envelope:
    """The router's own parked message with the values it sealed to park it opened; a value
    that does not open (its key gone from ``keys/``) stays sealed and is routed sealed."""
    found = _sensitive(envelope, config) if sealer is not None else None
    if found is None or sealer is None:
        return envelope
    inbound, message, marks = found
    opened = reopen(message.body, marks, sealer.keyring, Purpose.PARKED)
    if opened == message.body:
        return envelope
    return replace(envelope, body=_wire_body(inbound, encode_body(opened)))


def last_delivery(envelope: Envelope, limit: int) -> int | None:
    """The broker's ``x-delivery-count`` when this is the last delivery a quorum queue with
    ``x-delivery-limit: limit`` makes (once more returned, it dead-letters), else None.

    Believed only on a redelivery: RabbitMQ passes a publisher's header through on a
    first one (STYLE.md)."""
    count = envelope.properties.headers.get("x-delivery-count")
    if not envelope.redelivered or not isinstance(count, int) or isinstance(count, bool):
        return None
    return count if count >= limit else None


def _poisoned(envelope: Envelope, config: Config, sealer: Sealer | None) -> Prepared | None:
    """At its last delivery, a message with sensitive fields: dead-lettered by the router,
    sealed, as ``delivery_limit`` (the queue would dead-letter it as published)."""
    limit = config.topology.ingress.delivery_limit
    count = last_delivery(envelope, limit)
    found = _sensitive(envelope, config) if count is not None else None
    if count is None or found is None:
        return None
    inbound, message, marks = found
    dead = DeadLetter(Reason.DELIVERY_LIMIT, f"delivered {count + 1} times and never settled "
                      f"(the ingress queue's delivery limit is {limit}): dead-lettered by the "
                      "router with its sensitive fields sealed", message.message_type)
    sealed = _wire_body(inbound, _sealer(sealer).seal(message.body, marks))
    return Prepared(dead, replace(inbound.wire, dead_body=sealed))


def shown(envelope: Envelope, config: Config) -> bytes:
    """The body of ``envelope`` safe to log, journal or show on a page: every sensitive
    field masked, plain or sealed (a CloudEvent's data too).  The one call for any place
    that records or displays bodies."""
    inbound = ingest(envelope, config.topology.cloudevents)
    if isinstance(inbound, DeadLetter):
        return envelope.body
    message = _decoded(inbound)
    name = message.message_type if message else inbound.message.properties.type
    marks = config.registry.marks(name, message.version if message else None) if name else ()
    if not marks:
        return envelope.body
    return _wire_body(inbound, redacted(inbound.message.body, marks))
