"""Data keys, wrapped, as files beside the configuration; the key-encryption key from outside.

Layout (``keys/`` in the configuration directory, safe to keep in git because
every key in it is wrapped)::

    keys/<name>/v<N>.json    {"kid": "<name>.v<N>", "alg": "A256KW", "wrapped": "<base64>",
                              "created": "<ISO time>"}

A data key is 32 random bytes, wrapped with AES key wrap (RFC 3394) by the
*key-encryption key* (KEK), which is never read from the configuration: the
entry point takes it from ``MCP_KEK_FILE`` (a file holding 32 bytes, raw or
base64) or ``MCP_KEK`` (base64).  The newest version of a name encrypts; every
version decrypts, so a rotation is adding ``v<N+1>.json`` (``mcp-router keys
rotate NAME``) and reloading.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from router.config.keyring import Keyring
from router.errors import ConfigError, Problem

__all__ = ["KEYS_DIR", "KeyFile", "KeySet", "kek_from", "load_keys", "rotate", "unwrap"]

KEYS_DIR = "keys"
_VERSION = re.compile(r"^v([1-9][0-9]{0,8})\.json$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class KeyFile:
    """One wrapped data key."""

    kid: str
    name: str
    version: int
    wrapped: bytes = field(repr=False)
    file: str = ""


@dataclass(frozen=True)
class KeySet:
    """Every wrapped data key of a configuration, by name, versions ascending."""

    names: Mapping[str, tuple[KeyFile, ...]] = field(default_factory=dict)

    def newest(self, name: str) -> KeyFile | None:
        versions = self.names.get(name, ())
        return versions[-1] if versions else None

    def kids(self) -> frozenset[str]:
        return frozenset(k.kid for versions in self.names.values() for k in versions)


def _read(file: Path, shown: str, name: str, version: int) -> KeyFile | Problem:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return Problem(shown, f"not a key file: {exc}")
    kid = f"{name}.v{version}"
    if not isinstance(data, dict) or data.get("kid") != kid or data.get("alg") != "A256KW":
        return Problem(shown, f"a key file must hold kid {kid!r} and alg 'A256KW'")
    try:
        wrapped = base64.b64decode(str(data.get("wrapped", "")), validate=True)
    except (binascii.Error, ValueError):
        return Problem(shown, "'wrapped' is not base64")
    if len(wrapped) != 40:
        return Problem(shown, "'wrapped' must be a 32-byte key wrapped by AES key wrap "
                              "(40 bytes)")
    return KeyFile(kid, name, version, wrapped, shown)


def load_keys(directory: Path, display: str = KEYS_DIR) -> tuple[KeySet, list[Problem]]:
    """Every key file below ``directory`` (absent: no keys); never raises."""
    problems: list[Problem] = []
    names: dict[str, list[KeyFile]] = {}
    if not directory.is_dir():
        return KeySet(), problems
    for file in sorted(directory.rglob("*")):
        if not file.is_file() or file.name.startswith("."):
            continue
        rel = file.relative_to(directory).as_posix()
        shown = f"{display}/{rel}"
        parts = rel.split("/")
        match = _VERSION.match(parts[-1])
        if len(parts) != 2 or match is None or _NAME.match(parts[0]) is None:
            problems.append(Problem(shown, "not a key file: keys/<name>/v<N>.json"))
            continue
        found = _read(file, shown, parts[0], int(match.group(1)))
        if isinstance(found, Problem):
            problems.append(found)
        else:
            names.setdefault(parts[0], []).append(found)
    return KeySet({n: tuple(sorted(v, key=lambda k: k.version)) for n, v in names.items()}), \
        problems


def kek_from(environ: Mapping[str, str]) -> bytes | None:
    """The key-encryption key from ``MCP_KEK_FILE`` or ``MCP_KEK``; None when neither is set.

    Raises ``ConfigError`` for a KEK that is set but unusable.
    """
    path = environ.get("MCP_KEK_FILE")
    if path:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError([Problem(path, f"MCP_KEK_FILE cannot be read: {exc}")]) from exc
        return _kek(raw if len(raw) == 32 else raw.strip(), path)
    if environ.get("MCP_KEK"):
        return _kek(environ["MCP_KEK"].strip().encode(), "MCP_KEK")
    return None


def _kek(raw: bytes, where: str) -> bytes:
    if len(raw) == 32:
        return raw
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ConfigError([Problem(where, "the key-encryption key must be 32 bytes, raw or "
                                          "base64")])
    return key


def unwrap(keys: KeySet, kek: bytes, active: str | None) -> Keyring:
    """Every data key unwrapped; ``active`` (a name, or a pinned ``name.vN``) encrypts.

    Raises ``ConfigError`` naming each file the KEK does not unwrap.
    """
    plain: dict[str, bytes] = {}
    problems: list[Problem] = []
    for versions in keys.names.values():
        for key in versions:
            try:
                plain[key.kid] = aes_key_unwrap(kek, key.wrapped)
            except InvalidUnwrap:
                problems.append(Problem(key.file, f"data key {key.kid!r} does not unwrap with "
                                                  "this key-encryption key"))
    if problems:
        raise ConfigError(problems)
    kid = None
    if active is not None:
        newest = keys.newest(active)
        kid = newest.kid if newest is not None else active
    return Keyring(plain, kid if kid in plain else None)


def rotate(directory: Path, name: str, kek: bytes, now: datetime,
           random: Callable[[int], bytes] = os.urandom) -> Path:
    """Add the next version of data key ``name``, wrapped by ``kek``; the path written."""
    if _NAME.match(name) is None:
        raise ValueError(f"a key name is letters, digits, '-' and '_', got {name!r}")
    keys, problems = load_keys(directory)
    if problems:
        raise ConfigError(problems)
    newest = keys.newest(name)
    version = newest.version + 1 if newest is not None else 1
    if newest is not None:
        unwrap(KeySet({name: (newest,)}), kek, None)  # the same KEK, or stop here
    target = directory / name / f"v{version}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {"kid": f"{name}.v{version}", "alg": "A256KW",
                "wrapped": base64.b64encode(aes_key_wrap(kek, random(32))).decode("ascii"),
                "created": now.isoformat(timespec="seconds").replace("+00:00", "Z")}
    with target.open("x", encoding="utf-8") as out:  # never overwrite a key
        out.write(json.dumps(document, indent=2) + "\n")
    return target
