"""A configuration directory loaded and checked as a whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config.configuration import Config, check_config, load_config
from router.errors import ConfigError, Problem
from tests.unit.conftest import ORDER_SCHEMA, Check, WriteConfig

REPOSITORY = Path(__file__).resolve().parents[2]


def test_repository_root_is_a_valid_configuration() -> None:
    """The repository's own topology, schemas and policies pass check."""
    problems = check_config(REPOSITORY)

    assert [str(p) for p in problems] == []


def test_repository_root_loads() -> None:
    """The repository's example configuration loads into a ``Config``."""
    config = load_config(REPOSITORY)

    assert isinstance(config, Config)
    assert "OrderCreated" in config.registry
    assert config.policies.retry


def test_problem_prints_file_line_message() -> None:
    """``str(Problem)`` is ``FILE:LINE: message``, or ``FILE: message`` without a line."""
    located = Problem("topology.yaml", "bad", 14)
    unlocated = Problem("schemas", "missing")

    assert str(located) == "topology.yaml:14: bad"
    assert str(unlocated) == "schemas: missing"


def test_problems_name_the_file_inside_the_directory(write_config: WriteConfig) -> None:
    """Each problem names its file as DIR/topology.yaml and its line."""
    root = write_config(topology="exchanges:\n  - {name: a, bogus: 1}\n")

    problems = check_config(root)

    assert [str(p) for p in problems] == [
        f"{root}/topology.yaml:2: unknown key 'bogus' in exchange "
        "(known: arguments, auto_delete, durable, internal, name, type)"]


def test_check_reports_every_file_in_one_run(check: Check) -> None:
    """Problems in topology, schemas and policies are all reported together."""
    problems = check(
        topology="exchanges: [{name: a, bogus: 1}]\n",
        schemas={"T/v1.json": '{"type": 12}'},
        policies={"retry.yaml": "retry:\n  - {match: '*', attempts: 0}\n"},
    )

    files = sorted(p.split(":", 1)[0] for p in problems)
    assert files == ["policies/retry.yaml", "schemas/T/v1.json", "topology.yaml"]


def test_missing_topology_file_is_reported(write_config: WriteConfig) -> None:
    """A directory without topology.yaml gets one problem naming the file."""
    root = write_config()
    (root / "topology.yaml").unlink()

    problems = check_config(root)

    assert len(problems) == 1
    assert str(problems[0]).startswith(f"{root}/topology.yaml: cannot read: ")


def test_missing_directory_is_reported(tmp_path: Path) -> None:
    """check on a directory that does not exist says so instead of raising."""
    problems = check_config(tmp_path / "nowhere")

    assert [str(p) for p in problems] == [f"{tmp_path}/nowhere: configuration directory "
                                          "does not exist"]


def test_load_config_raises_with_every_problem(write_config: WriteConfig) -> None:
    """A bad directory raises ``ConfigError`` carrying each problem."""
    root = write_config(topology="exchanges: [{name: a, bogus: 1}, {name: amq.b}]\n")

    with pytest.raises(ConfigError) as raised:
        load_config(root)

    assert len(raised.value.problems) == 2
    assert str(raised.value) == "\n".join(str(p) for p in raised.value.problems)


def test_load_config_of_missing_directory_raises(tmp_path: Path) -> None:
    """Loading a directory that does not exist raises ``ConfigError``, not ``OSError``."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nowhere")


def test_loaded_config_holds_compiled_parts(write_config: WriteConfig) -> None:
    """A good directory loads topology, routes, schemas and (default) policies."""
    root = write_config(
        topology="exchanges: [{name: a}]\nroutes:\n  - {name: r, message_type: Order, "
                 "to: [{exchange: a}]}\n",
        schemas={"Order/v1.json": ORDER_SCHEMA},
    )

    config = load_config(root)

    assert config.directory == root
    assert [r.spec.name for r in config.router.routes] == ["r"]
    assert "Order" in config.registry
    assert config.policies.retry == ()
