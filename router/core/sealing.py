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
Retries park the message as it came (like the ingress queue, the router's
own retry queues hold what the publisher sent; publish sealed to keep even
those clean).  The nonces are passed in: the same inputs give the same result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from router.config.configuration import Config
from router.core.choose import NO_VIEW, LoadView
from router.core.cloudevent import Inbound, Mode, ingest
from router.core.decode import decode, encode_body, parse_body
from router.core.envelope import Envelope
from router.core.eventform import form_for, structured_body
from router.core.fieldcrypt import Keyring, Nonces
from router.core.ladder import Comeback
from router.core.outcome import Copy, DeadLetter, Decoded, Forward, Outcome
from router.core.pipeline import decide
from router.core.sensitive import Marks, redacted, seal

__all__ = ["Prepared", "Sealer", "SealingUnavailable", "decide_inbound", "prepare", "shown"]


class SealingUnavailable(RuntimeError):
    """A message has sensitive fields and no data key is there to seal them."""


@dataclass(frozen=True)
class Sealer:
    """The data keys (the active one seals) and where nonces come from."""

    keyring: Keyring
    nonces: Nonces

    def seal(self, body: Any, marks: Marks) -> bytes:
        if self.keyring.active is None:
            raise SealingUnavailable("no active data key to seal sensitive fields with")
        return encode_body(seal(body, marks, self.keyring, self.nonces))


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
    """The outcome to settle and the envelope to settle it with."""
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
        form = form_for(formats.get(copy.route, "as-is"), inbound.event, inbound.message,
                        message_type=message.message_type, version=version,
                        spec=config.topology.cloudevents, changed=body is not None)
        if form is not None and body is None:
            body = inbound.message.body  # the data, to be presented in its form
        unchanged = body is copy.body and form is None
        copies.append(copy if unchanged else replace(copy, body=body, form=form))
    return tuple(copies)


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
