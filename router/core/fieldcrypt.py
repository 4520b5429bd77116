"""Field-level encryption: AES-256-GCM over single JSON values, envelope style (pure).

A sensitive value is replaced by a *sealed* value, a JSON object::

    {"$enc": "AES-256-GCM", "kid": "pii.v2", "ct": "<base64: 12-byte nonce | ciphertext | tag>"}

The plaintext is the value's JSON (``router.core.decode.encode_body``: integers of
any size exact), so any JSON value can be sealed and comes back as it was; the
key id is authenticated data, so a ciphertext cannot be passed off under
another key.  ``kid`` names one *data key*
(``<name>.v<N>``); data keys are kept wrapped by a key-encryption key
(``router.config.keys``).  Nonces come from an injected source (``os.urandom`` in the
shell), so the functions here are deterministic under test.

What a value is sealed *for* is authenticated too (``Purpose``): a value in a
copy, a dead letter or from a publisher has the key id alone as associated
data; a value the router seals to park a message in its own queues has
``<kid>|parked``.  So the router, taking its parked message back, opens exactly
the values it sealed itself and never one a publisher sealed (that one fails
authentication as parked and stays sealed); anyone else holding the key opens
either (``open_value`` tries every purpose by default).

Errors: ``KeyMissing`` (a sealed value under a key id this keyring lacks) and
``SealBroken`` (not a ciphertext this module wrote, or tampered with), both
``DecryptError``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from router.config.keyring import KID, Keyring
from router.core.decode import encode_body, parse_body

__all__ = [
    "ALGORITHM",
    "EVERY_PURPOSE",
    "DecryptError",
    "KeyMissing",
    "Purpose",
    "SealBroken",
    "is_sealed",
    "open_value",
    "seal_value",
    "shape_error",
]

ALGORITHM = "AES-256-GCM"
_NONCE = 12
_TAG = 16
_KEYS = frozenset({"$enc", "kid", "ct"})

Nonces = Callable[[int], bytes]


class Purpose(Enum):
    """What a value was sealed for; its suffix is added to the key id as associated data."""

    COPY = ""  # copies, dead letters, publishers: the SPEC's format, AAD = the key id
    PARKED = "|parked"  # the router's own retry and shaping queues

    def associated(self, kid: str) -> bytes:
        return (kid + self.value).encode()


EVERY_PURPOSE = (Purpose.COPY, Purpose.PARKED)


class DecryptError(Exception):
    """A sealed value could not be opened."""


class KeyMissing(DecryptError):
    """The keyring has no data key with the sealed value's key id."""


class SealBroken(DecryptError):
    """Not a well-formed sealed value, or its ciphertext fails authentication."""


def is_sealed(value: Any) -> bool:
    """Whether ``value`` has the shape of a sealed value (not whether it opens)."""
    return isinstance(value, dict) and value.keys() == _KEYS and value.get("$enc") == ALGORITHM


def shape_error(value: Any) -> str | None:
    """Why ``value`` is not a well-formed sealed value, or None when it is."""
    if not is_sealed(value):
        return f"not a sealed value (an object with $enc: {ALGORITHM}, kid and ct)"
    kid, ct = value["kid"], value["ct"]
    if not isinstance(kid, str) or KID.match(kid) is None:
        return "kid must be '<key name>.v<version>'"
    if not isinstance(ct, str):
        return "ct must be a base64 string"
    try:
        raw = base64.b64decode(ct, validate=True)
    except (binascii.Error, ValueError):
        return "ct is not base64"
    if len(raw) < _NONCE + _TAG:
        return "ct is too short to hold a nonce and a tag"
    return None


_CIPHERS: dict[bytes, AESGCM] = {}


def _cipher_of(keyring: Keyring, kid: str) -> AESGCM:
    """The AES-GCM cipher of data key ``kid``, or ``KeyMissing``."""
    key = keyring.keys.get(kid)
    if key is None:
        known = ", ".join(sorted(keyring.keys)) or "none"
        raise KeyMissing(f"no data key {kid!r} to decrypt with (this keyring holds: "
                         f"{known})")
    return _cipher(key)


def _cipher(key: bytes) -> AESGCM:
    """One ``AESGCM`` per key (building one costs more than a small encryption)."""
    found = _CIPHERS.get(key)
    if found is None:
        found = _CIPHERS[key] = AESGCM(key)
    return found


def seal_value(value: Any, keyring: Keyring, nonces: Nonces,
               purpose: Purpose = Purpose.COPY) -> dict[str, str]:
    """``value`` sealed under the keyring's active key, for ``purpose``."""
    if keyring.active is None:
        raise KeyMissing("no active data key: nothing can be encrypted")
    nonce = nonces(_NONCE)
    plain = encode_body(value)
    sealed = _cipher(keyring.keys[keyring.active]).encrypt(
        nonce, plain, purpose.associated(keyring.active))
    return {"$enc": ALGORITHM, "kid": keyring.active,
            "ct": base64.b64encode(nonce + sealed).decode("ascii")}


def open_value(value: Any, keyring: Keyring,
               purposes: Iterable[Purpose] = EVERY_PURPOSE) -> Any:
    """The JSON value inside a value sealed for one of ``purposes``; ``KeyMissing`` or
    ``SealBroken`` otherwise."""
    problem = shape_error(value)
    if problem is not None:
        raise SealBroken(problem)
    raw, kid = base64.b64decode(value["ct"]), value["kid"]
    cipher = _cipher_of(keyring, kid)
    for purpose in purposes:
        try:
            plain = cipher.decrypt(raw[:_NONCE], raw[_NONCE:], purpose.associated(kid))
        except InvalidTag:
            continue
        return parse_body(plain)  # exact integers of any size, as written
    raise SealBroken(f"ciphertext under {kid!r} fails authentication (tampered with, "
                     "another key with the same id, or not sealed for this use)")
