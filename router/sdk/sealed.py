"""Sensitive fields on the service side: seal before publishing, open before handling (pure).

A service that holds the data keys (``keyring=`` on ``Service`` and
``ServicePublisher``; ``keyring_of`` unwraps a configuration's ``keys/`` with
the key-encryption key) gets each sealed field of a delivery opened before its
handler is called, and seals what it publishes so the plain value never
reaches the broker.  A handler registered with ``sealed=True`` takes sealed
values as they are (to store or forward them).  Any other handler of a
delivery with sealed fields that the service cannot open is not called: the
delivery is dead-lettered as ``handler_failed`` saying which key is missing.
Values the router sealed to park a message (``router.core.fieldcrypt.Purpose``)
open like any other: one can reach a service when the ingress queue itself
dead-lettered a parked message and it was replayed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from router.config.cloudevents_spec import CloudEventsSpec, Mode
from router.config.keyring import Keyring
from router.config.keys import KeySet, unwrap
from router.config.schemas import SchemaRegistry
from router.config.sensitive_marks import Marks
from router.core.cloudevent import ingest
from router.core.decode import encode_body, parse_body, schema_version_of
from router.core.envelope import Envelope
from router.core.eventform import structured_body
from router.core.fieldcrypt import DecryptError, Nonces
from router.core.outcome import DeadLetter
from router.core.sensitive import seal, sealed_at, unseal

__all__ = ["KeyConfig", "keyring_from", "keyring_of", "open_fields", "seal_envelope",
           "seal_fields"]


class _Encryption(Protocol):
    @property
    def key(self) -> str | None: ...


class _Policies(Protocol):
    @property
    def encryption(self) -> _Encryption: ...


class KeyConfig(Protocol):
    """What ``keyring_of`` reads of a configuration (``router.config.Config`` has it): the
    wrapped data keys and the encryption policy's key name."""

    @property
    def keys(self) -> KeySet: ...

    @property
    def policies(self) -> _Policies: ...


def keyring_of(config: KeyConfig, kek: bytes) -> Keyring:
    """The configuration's data keys unwrapped; its encryption policy's key seals."""
    return keyring_from(config.keys, kek, config.policies.encryption.key)


def keyring_from(keys: KeySet, kek: bytes, active: str | None) -> Keyring:
    """The data keys of ``keys`` unwrapped with ``kek``; ``active`` (a key name, or a pinned
    ``name.vN``) seals.  ``ConfigError`` names each key the KEK does not unwrap."""
    return unwrap(keys, kek, active)


def open_fields(body: Any, marks: Marks, keyring: Keyring | None, message_type: str) -> Any:
    """``body`` with its sealed fields opened; ``DecryptError`` with a clear text if not."""
    if keyring is not None:
        try:
            return unseal(body, marks, keyring)
        except DecryptError as exc:
            raise DecryptError(f"{message_type}: {exc}") from exc
    sealed = [where for where, problem in sealed_at(body, marks) if problem is None]
    if not sealed:
        return body
    kids = sorted({_kid(body, where) for where in sealed})
    raise DecryptError(f"{message_type} carries encrypted fields "
                       f"({', '.join('/' + '/'.join(map(str, w)) for w in sealed)} under "
                       f"{', '.join(kids)}) and this service holds no data keys: pass "
                       "keyring= (router.sdk.keyring_of) or register the handler with "
                       "sealed=True")


def _kid(body: Any, where: tuple[str | int, ...]) -> str:
    for part in where:
        body = body[part]
    return str(body.get("kid"))


def seal_fields(body: Any, marks: Marks, keyring: Keyring, nonces: Nonces) -> Any:
    """``body`` with every plain sensitive field sealed."""
    return seal(body, marks, keyring, nonces)


def seal_envelope(envelope: Envelope, registry: SchemaRegistry | None,
                  keyring: Keyring | None, nonces: Nonces,
                  cloudevents: CloudEventsSpec | None = None) -> Envelope:
    """The envelope with its body's plain sensitive fields sealed, where keys allow (a
    CloudEvent's data in its own content mode)."""
    if registry is None or keyring is None or keyring.active is None:
        return envelope
    inbound = ingest(envelope, cloudevents or CloudEventsSpec())
    if isinstance(inbound, DeadLetter):
        return envelope
    inner = inbound.message
    message_type = inner.properties.type or inner.routing_key
    version = schema_version_of(inner.properties.headers)
    marks = registry.marks(message_type, version if isinstance(version, int) else None) \
        if message_type else ()
    if not marks:
        return envelope
    try:
        data = encode_body(seal(parse_body(inner.body), marks, keyring, nonces))
    except ValueError:
        return envelope
    event = inbound.event
    if event is not None and event.mode is Mode.STRUCTURED:
        data = structured_body(event.attributes, data)
    return replace(envelope, body=data)
