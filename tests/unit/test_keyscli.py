"""``mcp-router keys``: generate a KEK, rotate data keys, list them; check unwraps them."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from router.tools.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example configuration with a KEK file in the environment."""
    for name in ("topology.yaml", "schemas", "policies"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    kek = tmp_path / "kek"
    kek.write_bytes(base64.b64encode(b"\x03" * 32))
    monkeypatch.setenv("MCP_KEK_FILE", str(kek))
    return tmp_path


def test_rotate_adds_versions_and_list_shows_the_newest(
        shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two rotations give v1 and v2; list marks v2 newest and both unwrapping."""
    assert main(["keys", "rotate", "pii", "--config", str(shop)]) == 0
    assert main(["keys", "rotate", "pii", "--config", str(shop)]) == 0
    assert main(["keys", "list", "--config", str(shop)]) == 0
    out = capsys.readouterr().out
    assert "added pii.v2" in out
    assert "pii.v1\tdecrypts (unwraps)" in out
    assert "pii.v2\tnewest (unwraps)" in out


def test_check_unwraps_every_key_with_the_kek_given(
        shop: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """check passes with the right KEK and names each key file another KEK cannot unwrap."""
    assert main(["keys", "rotate", "pii", "--config", str(shop)]) == 0
    assert main(["check", "--config", str(shop)]) == 0
    monkeypatch.delenv("MCP_KEK_FILE")
    monkeypatch.setenv("MCP_KEK", base64.b64encode(b"\x04" * 32).decode())
    assert main(["check", "--config", str(shop)]) == 1
    assert "keys/pii/v1.json: data key 'pii.v1' does not unwrap" in capsys.readouterr().err


def test_rotate_without_a_kek_says_how_to_get_one(
        shop: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """No KEK in the environment: a clear error, nothing written."""
    monkeypatch.delenv("MCP_KEK_FILE")
    assert main(["keys", "rotate", "pii", "--config", str(shop)]) == 1
    assert "generate-kek" in capsys.readouterr().err
    assert not (shop / "keys").exists()


def test_generate_kek_prints_32_bytes_of_base64(capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh KEK each time, usable as MCP_KEK."""
    assert main(["keys", "generate-kek"]) == 0
    assert len(base64.b64decode(capsys.readouterr().out.strip())) == 32
