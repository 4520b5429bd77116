"""``mcp-router keys``: make a key-encryption key, add a data key version, list them.

The KEK comes from ``MCP_KEK_FILE`` or ``MCP_KEK`` (``router.config.keys.kek_from``);
the data keys are files under ``keys/`` in the configuration directory.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from router.config.configuration import Config
from router.config.keys import KEYS_DIR, kek_from, load_keys, rotate, unwrap
from router.errors import ConfigError, Problem

__all__ = ["add_keys_parser", "key_problems", "run_keys"]


def add_keys_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    keys = sub.add_parser("keys", help="data keys for sensitive fields: rotate, list")
    commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    rotate_cmd = commands.add_parser("rotate", parents=[common],
                                     help="add the next version of a data key (it encrypts "
                                          "from the next reload; older ones still decrypt)")
    rotate_cmd.add_argument("name", help="key name, as in the encryption policy's key")
    commands.add_parser("list", parents=[common], help="every data key version, and which "
                                                       "one encrypts")
    commands.add_parser("generate-kek", help="print a new key-encryption key (base64) for "
                                             "MCP_KEK or MCP_KEK_FILE; keep it out of git")


def key_problems(config: Config, environ: Mapping[str, str]) -> list[Problem]:
    """With a KEK in the environment: every data key file must unwrap with it."""
    try:
        kek = kek_from(environ)
        if kek is not None:
            unwrap(config.keys, kek, config.policies.encryption.key)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def run_keys(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.keys_command == "generate-kek":
        print(base64.b64encode(os.urandom(32)).decode("ascii"))
        return 0
    directory = args.config / KEYS_DIR
    try:
        kek = kek_from(environ)
        if args.keys_command == "rotate":
            if kek is None:
                return _fail("set MCP_KEK_FILE or MCP_KEK to the key-encryption key "
                             "('mcp-router keys generate-kek' makes one)")
            path = rotate(directory, args.name, kek, datetime.now(UTC))
            print(f"added {args.name}.{path.stem} in {path}: it encrypts once the "
                  "router reloads; older versions still decrypt")
            return 0
        return _list(args, kek)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return _fail("the data keys cannot be used")
    except ValueError as exc:
        return _fail(str(exc))


def _list(args: argparse.Namespace, kek: bytes | None) -> int:
    keys, problems = load_keys(args.config / KEYS_DIR)
    for problem in problems:
        print(problem, file=sys.stderr)
    opened = unwrap(keys, kek, None) if kek is not None else None
    for _name, versions in sorted(keys.names.items()):
        for key in versions:
            state = "newest" if key is versions[-1] else "decrypts"
            check = "" if opened is None else " (unwraps)" if key.kid in opened else ""
            print(f"{key.kid}\t{state}{check}\t{key.file}")
    if not keys.names:
        print(f"no data keys in {args.config / KEYS_DIR}")
    return 1 if problems else 0


def _fail(message: str) -> int:
    print(f"mcp-router keys: {message}", file=sys.stderr)
    return 1
