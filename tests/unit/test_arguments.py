"""The command line's grammar, without running a command: defaults from the environment, types."""

from __future__ import annotations

import argparse

import pytest

from router.tools.arguments import build_parser, not_negative, positive


def test_environment_defaults_come_from_the_mapping_given() -> None:
    """--redis-url and --management-url default to what the environment passed in says."""
    parser = build_parser({"MCP_REDIS_URL": "redis://cache:6379/0",
                           "MCP_MANAGEMENT_URL": "http://u:p@rabbit:15672/"})
    assert parser.parse_args(["run"]).redis_url == "redis://cache:6379/0"
    assert parser.parse_args(["plan"]).management_url == "http://u:p@rabbit:15672/"
    bare = build_parser({})
    assert bare.parse_args(["run"]).redis_url is None
    assert bare.parse_args(["plan"]).management_url is None


def test_every_command_parses_with_its_required_arguments() -> None:
    """Each command the SPEC lists is a subcommand of the parser."""
    parser = build_parser({})
    for argv in (["run"], ["check"], ["services"], ["apply"], ["plan"], ["asyncapi"],
                 ["publish", "--type", "OrderCreated", "{}"], ["follow", "id-1"],
                 ["init", "shop"], ["dlq", "list"], ["keys", "list"], ["console"]):
        assert parser.parse_args(argv).command == argv[0]


def test_counts_must_be_positive_and_sizes_not_negative() -> None:
    """positive() refuses zero, not_negative refuses -1; argparse names the type on error."""
    assert positive(int)("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="must be positive"):
        positive(int)("0")
    assert positive(float).__name__ == "float"
    assert not_negative("0") == 0
    with pytest.raises(argparse.ArgumentTypeError, match="0 or more"):
        not_negative("-1")
