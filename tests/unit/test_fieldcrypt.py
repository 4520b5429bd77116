"""Field encryption primitives and data key files: AES-256-GCM values, wrapped keys, rotation."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from router.config.keyring import Keyring
from router.config.keys import kek_from, load_keys, rotate, unwrap
from router.core.fieldcrypt import KeyMissing, SealBroken, open_value, seal_value, shape_error
from router.errors import ConfigError

KEK = bytes(range(32))
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def counting_nonces() -> Callable[[int], bytes]:
    """Distinct deterministic nonces."""
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


def ring(active: str = "pii.v1") -> Keyring:
    return Keyring({"pii.v1": b"\x01" * 32, "pii.v2": b"\x02" * 32}, active)


def test_a_sealed_value_opens_to_the_same_json() -> None:
    """Any JSON value sealed under the active key opens to an equal value."""
    keys = ring()
    for value in ("ada@example.com", 42, None, {"card": [1, 2]}, [True, 1.5]):
        sealed = seal_value(value, keys, counting_nonces())
        assert sealed["kid"] == "pii.v1"
        assert sealed["$enc"] == "AES-256-GCM"
        assert "ada" not in sealed["ct"]
        assert open_value(sealed, keys) == value


def test_the_key_id_is_authenticated() -> None:
    """A ciphertext relabelled with another key id fails authentication."""
    keys = ring()
    sealed = seal_value("secret", keys, counting_nonces())
    with pytest.raises(SealBroken, match="fails authentication"):
        open_value({**sealed, "kid": "pii.v2"}, keys)


def test_a_missing_key_is_a_clear_error() -> None:
    """A keyring without the value's key id says which key it lacks and what it holds."""
    sealed = seal_value("secret", ring("pii.v2"), counting_nonces())
    with pytest.raises(KeyMissing, match=r"no data key 'pii.v2'.*pii.v1"):
        open_value(sealed, Keyring({"pii.v1": b"\x01" * 32}, "pii.v1"))


def test_shape_errors_name_what_is_wrong() -> None:
    """A value that only looks sealed is described, not decrypted."""
    good = seal_value(1, ring(), counting_nonces())
    assert shape_error(good) is None
    assert "kid" in str(shape_error({**good, "kid": "no version"}))
    assert "base64" in str(shape_error({**good, "ct": "***"}))
    assert "too short" in str(shape_error({**good, "ct": base64.b64encode(b"x").decode()}))
    assert "not a sealed value" in str(shape_error("plain"))


def test_the_keyring_never_shows_key_material() -> None:
    """``repr`` lists key ids, not keys."""
    assert repr(ring()) == "Keyring(kids=['pii.v1', 'pii.v2'], active='pii.v1')"


def test_rotation_adds_a_version_and_every_version_decrypts(tmp_path: Path) -> None:
    """rotate writes v1 then v2; the newest encrypts, both unwrap; values under v1 still open."""
    first = rotate(tmp_path, "pii", KEK, NOW)
    old = seal_value("old", unwrap(load_keys(tmp_path)[0], KEK, "pii"),
                     counting_nonces())
    second = rotate(tmp_path, "pii", KEK, NOW)
    keys, problems = load_keys(tmp_path)
    keyring = unwrap(keys, KEK, "pii")

    assert (first.name, second.name, problems) == ("v1.json", "v2.json", [])
    assert keyring.active == "pii.v2"
    assert sorted(keyring.keys) == ["pii.v1", "pii.v2"]
    assert open_value(old, keyring) == "old"
    assert unwrap(keys, KEK, "pii.v1").active == "pii.v1"  # a pinned version


def test_a_wrong_kek_is_refused_naming_the_file(tmp_path: Path) -> None:
    """Data keys that do not unwrap stop the load; rotation refuses another KEK."""
    rotate(tmp_path, "pii", KEK, NOW)
    with pytest.raises(ConfigError, match=r"pii/v1.json.*does not unwrap"):
        unwrap(load_keys(tmp_path)[0], b"\x09" * 32, "pii")
    with pytest.raises(ConfigError):
        rotate(tmp_path, "pii", b"\x09" * 32, NOW)


def test_key_files_are_checked(tmp_path: Path) -> None:
    """A file with the wrong kid, or off the layout, is a problem with its path."""
    (tmp_path / "pii").mkdir()
    (tmp_path / "pii" / "v1.json").write_text('{"kid": "pii.v7", "alg": "A256KW"}')
    (tmp_path / "stray.txt").write_text("x")
    _, problems = load_keys(tmp_path, "keys")
    assert sorted(str(p) for p in problems) == [
        "keys/pii/v1.json: a key file must hold kid 'pii.v1' and alg 'A256KW'",
        "keys/stray.txt: not a key file: keys/<name>/v<N>.json",
    ]


def test_the_kek_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    """MCP_KEK_FILE (raw or base64) wins over MCP_KEK; a bad one is a clear error."""
    raw = tmp_path / "kek"
    raw.write_bytes(KEK)
    encoded = base64.b64encode(KEK).decode()
    assert kek_from({"MCP_KEK_FILE": str(raw), "MCP_KEK": "x"}) == KEK
    assert kek_from({"MCP_KEK": encoded}) == KEK
    assert kek_from({}) is None
    with pytest.raises(ConfigError, match="32 bytes"):
        kek_from({"MCP_KEK": "c2hvcnQ="})


def test_integers_beyond_64_bits_are_sealed_exactly() -> None:
    """A value orjson cannot write (2**70) is sealed through json and opens exactly."""
    keys = ring()
    sealed = seal_value({"n": 2**70}, keys, counting_nonces())
    assert open_value(sealed, keys) == {"n": 2**70}
