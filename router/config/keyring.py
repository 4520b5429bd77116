"""The unwrapped data keys a router or service seals and opens fields with (frozen).

``router.config.keys`` unwraps them from ``keys/``; ``router.core.fieldcrypt``
encrypts and decrypts with them.  ``repr`` never shows key material.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["KID", "Keyring"]

# A key id: a name and a version, e.g. "orders.v2".
KID = re.compile(r"^[A-Za-z0-9_-]{1,64}\.v[1-9][0-9]{0,8}$")


@dataclass(frozen=True)
class Keyring:
    """Unwrapped data keys by key id, and which one seals new values.

    ``repr`` never shows key material.
    """

    keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    active: str | None = None

    def __post_init__(self) -> None:
        for kid, key in self.keys.items():
            if len(key) != 32:
                raise ValueError(f"data key {kid!r} must be 32 bytes (AES-256), got {len(key)}")
        if self.active is not None and self.active not in self.keys:
            raise ValueError(f"active key {self.active!r} is not in the keyring")

    def __repr__(self) -> str:
        return f"Keyring(kids={sorted(self.keys)}, active={self.active!r})"

    def __contains__(self, kid: object) -> bool:
        return kid in self.keys
