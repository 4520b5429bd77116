"""Builders shared by the unit tests of the pure core (no broker, no clock).

``write_config`` writes a configuration directory from dicts (or raw text where
a test is about lines or syntax); ``check`` runs ``check_config`` on one and
gives each problem as printed, relative to the directory; ``envelope`` builds
an inbound message.  Each call gets its own directory under ``tmp_path``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.config.configuration import Config, check_config, load_config
from router.config.schema_loading import load_registry
from router.config.schemas import SchemaRegistry
from router.core.envelope import Envelope, Properties

INGRESS = "mcp.ingress"

#: A small message schema used across files: a uuid, an integer >= 1, an e-mail.
ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["order_id", "quantity"],
    "properties": {
        "order_id": {"type": "string", "format": "uuid"},
        "quantity": {"type": "integer", "minimum": 1},
        "email": {"type": "string", "format": "email"},
    },
}

#: A topology with one exchange and no routes; tests add what they need.
BASE_TOPOLOGY: dict[str, Any] = {
    "exchanges": [{"name": "orders", "type": "topic"}],
    "queues": [{"name": "billing", "type": "quorum"}],
    "bindings": [{"exchange": "orders", "queue": "billing", "routing_key": "#"}],
}

Text = dict[str, Any] | list[Any] | str
WriteConfig = Callable[..., Path]
Check = Callable[..., list[str]]
LoadConfig = Callable[..., Config]
LoadRegistry = Callable[[Mapping[str, Text]], tuple[SchemaRegistry, list[str]]]
MakeEnvelope = Callable[..., Envelope]


def _write(path: Path, content: Text, dump: Callable[[Any], str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else dump(content), encoding="utf-8")


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def _json(data: Any) -> str:
    return json.dumps(data, indent=2)


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Factory: write topology.yaml, schemas/ and policies/ into a fresh directory.

    ``topology`` is a dict (dumped as YAML) or raw YAML text; ``schemas`` maps a
    path below ``schemas/`` (``"Order/v1.json"``) to a dict or raw text;
    ``policies`` maps a file name below ``policies/`` to a dict or raw text.
    ``schemas=None`` still creates an empty ``schemas/``.
    """
    counter = itertools.count()

    def write(
        *,
        topology: Text | None = None,
        schemas: Mapping[str, Text] | None = None,
        policies: Mapping[str, Text] | None = None,
    ) -> Path:
        root = tmp_path / f"config{next(counter)}"
        root.mkdir()
        _write(root / "topology.yaml", BASE_TOPOLOGY if topology is None else topology, _yaml)
        (root / "schemas").mkdir()
        for rel, schema in (schemas or {}).items():
            _write(root / "schemas" / rel, schema, _json)
        for name, policy in (policies or {}).items():
            _write(root / "policies" / name, policy, _yaml)
        return root

    return write


@pytest.fixture
def check(write_config: WriteConfig) -> Check:
    """Factory: write a config directory and return its problems as printed, minus the dir."""

    def run(**files: Any) -> list[str]:
        root = write_config(**files)
        return [str(p).removeprefix(f"{root}/") for p in check_config(root)]

    return run


@pytest.fixture
def config(write_config: WriteConfig) -> LoadConfig:
    """Factory: write a config directory and load it (raises ``ConfigError`` if bad)."""

    def load(**files: Any) -> Config:
        return load_config(write_config(**files))

    return load


@pytest.fixture
def registry(write_config: WriteConfig) -> LoadRegistry:
    """Factory: write ``schemas/`` files and load them; problems as printed, minus the dir."""

    def load(schemas: Mapping[str, Text]) -> tuple[SchemaRegistry, list[str]]:
        root = write_config(schemas=schemas)
        found, problems = load_registry(root / "schemas", "schemas")
        return found, [str(p) for p in problems]

    return load


def make_envelope(
    body: Any = None,
    *,
    routing_key: str = "",
    exchange: str = INGRESS,
    **properties: Any,
) -> Envelope:
    """An inbound delivery; a non-bytes ``body`` is encoded as JSON."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Envelope(raw, Properties(**properties), exchange, routing_key)


@pytest.fixture
def envelope() -> MakeEnvelope:
    """Factory: an inbound ``Envelope`` (see ``make_envelope``)."""
    return make_envelope
