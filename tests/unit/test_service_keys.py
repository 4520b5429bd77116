"""The router's data keys follow its configuration: unwrapped at start, on every reload."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from router.config.keys import rotate
from router.errors import ConfigError
from router.runtime.service import RouterService, Settings
from tests.unit.conftest import WriteConfig
from tests.unit.test_sensitive import SCHEMAS

KEK = b"\x06" * 32
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def vault(write_config: WriteConfig) -> Path:
    """Sensitive schemas, an encryption policy and data key pii.v1."""
    root = write_config(schemas=SCHEMAS, policies={"enc.yaml": {"encryption": {"key": "pii"}}})
    rotate(root / "keys", "pii", KEK, NOW)
    return root


def service(root: Path, kek: bytes | None) -> RouterService:
    from router.config.configuration import load_config  # noqa: PLC0415

    return RouterService(load_config(root), Settings("amqp://guest:guest@127.0.0.1:1/", kek=kek))


def test_the_sealer_uses_the_newest_key_and_is_kept_per_configuration(vault: Path) -> None:
    """pii.v1 seals; asking again for the same configuration gives the same sealer."""
    router = service(vault, KEK)
    sealer = router.sealer(router.config)
    assert sealer is not None
    assert sealer.keyring.active == "pii.v1"
    assert router.sealer(router.config) is sealer


def test_without_the_kek_the_configuration_is_refused(vault: Path) -> None:
    """Sensitive schemas and no KEK: ConfigError saying which variables to set."""
    with pytest.raises(ConfigError, match="MCP_KEK_FILE or MCP_KEK"):
        service(vault, None).sealer(service(vault, None).config)


async def test_a_rotation_is_picked_up_by_reload(vault: Path) -> None:
    """After keys rotate, a reload names the new key and the sealer uses it."""
    router = service(vault, KEK)
    rotate(vault / "keys", "pii", KEK, NOW)
    result = await router.reload()
    assert result.ok, result.problems
    assert "data key pii.v2 added" in result.changes
    sealer = router.sealer(router.config)
    assert sealer is not None
    assert sealer.keyring.active == "pii.v2"
    assert "pii.v1" in sealer.keyring


async def test_a_key_the_kek_cannot_unwrap_is_refused_by_reload(vault: Path) -> None:
    """A new key file wrapped by another KEK leaves the running configuration in place."""
    router = service(vault, KEK)
    before = router.config
    (vault / "keys" / "pii" / "v2.json").write_text(_foreign(vault))
    result = await router.reload()
    assert not result.ok
    assert any("does not unwrap" in p for p in result.problems)
    assert router.config is before


def _foreign(vault: Path) -> str:
    """A pii.v2 key file wrapped by a KEK other than the router's."""
    other = vault / "other"
    rotate(other, "pii", b"\x09" * 32, NOW)
    rotate(other, "pii", b"\x09" * 32, NOW)
    return (other / "pii" / "v2.json").read_text()
