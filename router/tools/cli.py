"""``mcp-router``: run, check, init, apply, plan, asyncapi, publish, follow, services, dlq,
keys, console.

The entry point, and the only module that reads ``os.environ``
(``MCP_AMQP_URL``, ``MCP_LOG_LEVEL``, ``MCP_CONSOLE_TOKEN``...): it parses the
command line (``router.tools.arguments``), sets up logging and tracing, and
hands the command to the module that implements it.  Every failure a user can
cause ends with a clear message on stderr, never a traceback.  Exit codes, the
same for every command: 0 done, 1 problems found or the operation failed (an
unreachable broker included), 2 a usage error (argparse's), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from router.broker.amqp import DEFAULT_URL
from router.errors import BrokerUnavailable, ConfigError, DeliveryFailed, TopologyConflict
from router.observe.logs import configure as configure_logs
from router.observe.telemetry import TelemetrySettings
from router.runtime.http import console_token, parse_address
from router.runtime.supervisor import child_env, run_fleet
from router.tools.arguments import build_parser
from router.tools.check import run_check, run_services
from router.tools.declaring import Via, run_apply, run_plan
from router.tools.dlq import run_dlq
from router.tools.document import run_asyncapi
from router.tools.follow import run_follow
from router.tools.keyscli import run_keys
from router.tools.publishing import run_publish
from router.tools.run import run_router
from router.tools.scaffold import run_init
from router.tools.terminal import fail, load_or_fail
from router.web.serve import ConsoleSettings, serve_console

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status (see the module docstring)."""
    args = build_parser(os.environ).parse_args(argv)
    # Every node of a cluster, in order: repeated --amqp-url, else MCP_AMQP_URL (commas).
    args.amqp_url = ",".join(getattr(args, "amqp_url", None)
                             or [os.environ.get("MCP_AMQP_URL", DEFAULT_URL)])
    try:
        configure_logs(os.environ.get("MCP_LOG_LEVEL", "INFO"),
                       os.environ.get("MCP_LOG_FORMAT", "text"))
        telemetry = TelemetrySettings.from_env(
            os.environ, "mcp-router" if args.command == "run" else "mcp-router-cli")
        if args.command == "run":
            args.console_token = console_token(os.environ)
    except ValueError as exc:
        return fail(str(exc))
    if args.command == "keys":
        return run_keys(args, os.environ)
    offline: Callable[[argparse.Namespace], int] | None = {
        "check": lambda a: run_check(a, os.environ), "asyncapi": run_asyncapi,
        "init": lambda a: run_init(a.directory),
    }.get(args.command)
    try:
        if offline is not None:  # no event loop (check --live makes its own), no config load
            return offline(args)
        return _online(args, telemetry, argv)
    except TopologyConflict as exc:
        for conflict in exc.conflicts:
            print(f"conflict: {conflict}", file=sys.stderr)
        return fail("the broker holds entities that differ from the topology; "
                    "change the file or delete those entities")
    except ConfigError as exc:  # data keys that cannot be unwrapped
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return fail(f"{len(exc.problems)} problem(s) with the data keys")
    except (BrokerUnavailable, DeliveryFailed, ValueError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130


def _online(args: argparse.Namespace, telemetry: TelemetrySettings,
            argv: Sequence[str] | None) -> int:
    """The commands that load the configuration and run in an event loop."""
    config = load_or_fail(args.config)
    if isinstance(config, int):
        return config
    runner = _runner()
    commands: dict[str, Callable[[], Coroutine[Any, Any, int]]] = {
        "services": lambda: run_services(args, config),
        "apply": lambda: run_apply(config, args.amqp_url),
        "plan": lambda: run_plan(config, args.amqp_url, args.management_url, Via(args.via)),
        "publish": lambda: run_publish(args, config, telemetry),
        "dlq": lambda: run_dlq(args, config, datetime.now(UTC)),
        "follow": lambda: run_follow(args, config),
        "console": lambda: serve_console(
            config, args.amqp_url, parse_address(args.http),
            settings=ConsoleSettings.from_env(os.environ, args.audit_log),
            router_url=args.router),
    }
    if args.command in commands:
        return runner(commands[args.command]())
    if args.http:
        parse_address(args.http)
    if args.workers is not None:
        raw = list(sys.argv[1:] if argv is None else argv)
        return runner(run_fleet(args.workers, raw[raw.index("run") + 1:],
                                child_env(os.environ, args.amqp_url), args.http))
    return runner(run_router(args, config, telemetry, os.environ))


def _runner() -> Callable[[Coroutine[Any, Any, int]], int]:
    """``uvloop.run`` where uvloop is installed, else ``asyncio.run``."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up where it is installed
    except ImportError:
        return asyncio.run
    return uvloop.run


if __name__ == "__main__":
    sys.exit(main())
