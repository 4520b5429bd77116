"""The command line's grammar: every ``mcp-router`` command, its options and their help.

``build_parser`` is the whole tree; each command family adds its own
subparsers, so one function per family reads like the ``--help`` it prints.
Defaults that come from the environment (``MCP_REDIS_URL``,
``MCP_MANAGEMENT_URL``) are read from the mapping the entry point passes in
(``router.tools.cli`` is the only reader of ``os.environ``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from router import __version__
from router.discovery.census import DEFAULT_WAIT
from router.observe.journal import DEFAULT_SIZE
from router.tools.declaring import Via
from router.tools.follow import DEFAULT_HTTP
from router.tools.keyscli import add_keys_parser

__all__ = ["build_parser", "not_negative", "positive"]


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The ``mcp-router`` parser: one subcommand per command, ``--config``/``--amqp-url`` shared."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=Path("."), metavar="DIR",
                        help="configuration directory (default: current directory)")
    common.add_argument("--amqp-url", action="append", metavar="URL",
                        help="broker URL; repeat it (or separate with commas) for the nodes of "
                             "a cluster (default: $MCP_AMQP_URL or local guest)")
    parser = argparse.ArgumentParser(prog="mcp-router", description=(
        "A message control plane for RabbitMQ: validate, route and dead-letter from files."))
    parser.add_argument("--version", action="version", version=f"mcp-router {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = _add_run(sub, common, environ)
    _add_inspection(sub, common, environ)
    _add_asyncapi(sub, common)
    _add_messages(sub, common)
    init = sub.add_parser("init", help="write a small working configuration into DIR")
    init.add_argument("directory", type=Path, metavar="DIR")
    _add_dlq(sub, common)
    add_keys_parser(sub, common)
    console = sub.add_parser("console", parents=[common],
                             help="serve the operator's console without a router")
    console.add_argument("--http", metavar="HOST:PORT", default="127.0.0.1:8081",
                         help="where to listen (127.0.0.1:8081)")
    console.add_argument("--router", metavar="URL",
                         help="a router's --http address, to chart its rates from /metrics")
    for command in (run, console):
        command.add_argument("--audit-log", type=Path, metavar="FILE",
                             help="the console's audit log (default: $MCP_CONSOLE_AUDIT_LOG, "
                                  "else ~/.local/state/mcp-router/audit.jsonl)")
    return parser


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: ``kind`` of the text, refused unless above zero."""
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def not_negative(text: str) -> int:
    """An argparse type: an int, refused below zero."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _add_run(sub: Any, common: argparse.ArgumentParser,
             environ: Mapping[str, str]) -> argparse.ArgumentParser:
    run: argparse.ArgumentParser = sub.add_parser(
        "run", parents=[common], help="declare topology, route until stopped")
    run.add_argument("--http", metavar="HOST:PORT",
                     help="serve the console, /healthz, /readyz, /metrics, /messages/<id> "
                          "(':PORT' binds loopback; changes and POST /reload need "
                          "$MCP_CONSOLE_TOKEN)")
    run.add_argument("--journal-size", type=not_negative, default=DEFAULT_SIZE, metavar="N",
                     help=f"messages remembered for follow ({DEFAULT_SIZE:,}; 0 turns it off)")
    run.add_argument("--prefetch", type=positive(int), default=256,
                     help="messages in flight (256)")
    run.add_argument("--redis-url", default=environ.get("MCP_REDIS_URL"), metavar="URL",
                     help="Redis for rate-limit rules shared by replicas (default: "
                          "$MCP_REDIS_URL)")
    run.add_argument("--watch", type=float, default=1.0, metavar="SECONDS",
                     help="reload when configuration files change, checked this often "
                          "(1; 0 turns it off); SIGHUP and POST /reload (with the token) "
                          "always work")
    run.add_argument("--workers", type=positive(int), metavar="N",
                     help="N routing processes under one supervisor (one /metrics, one /readyz)")
    run.add_argument("--publish-channels", type=positive(int), default=8,
                     help="confirming channels for publishing (8)")
    return run


def _add_inspection(sub: Any, common: argparse.ArgumentParser,
                    environ: Mapping[str, str]) -> None:
    """check, services, apply and plan: what the files hold and what the broker holds."""
    check = sub.add_parser("check", parents=[common],
                           help="lint the configuration, no broker needed (but for --live)")
    check.add_argument("--live", action="store_true",
                       help="also ask the broker which services are live and flag the routes "
                            "no live service consumes")
    check.add_argument("--wait", type=float, default=DEFAULT_WAIT, metavar="SECONDS",
                       help=f"with --live: how long to listen for services ({DEFAULT_WAIT:g})")
    services = sub.add_parser("services", parents=[common],
                              help="list the live service instances (asks them on the broker)")
    services.add_argument("--wait", type=float, default=DEFAULT_WAIT, metavar="SECONDS",
                          help=f"how long to listen for answers ({DEFAULT_WAIT:g})")
    services.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("apply", parents=[common], help="declare the topology only")
    plan = sub.add_parser("plan", parents=[common],
                          help="what apply would create, and what conflicts, on the live broker")
    plan.add_argument("--management-url", metavar="URL",
                      default=environ.get("MCP_MANAGEMENT_URL"),
                      help="RabbitMQ management API, e.g. http://user:pass@host:15672/ "
                           "(default: MCP_MANAGEMENT_URL, else port 15672 of the broker "
                           "host with the AMQP credentials; passive declarations when it "
                           "does not answer)")
    plan.add_argument("--via", choices=[via.value for via in Via], default=Via.AUTO.value,
                      help="how to read the broker: the management API, passive "
                           "declarations, or auto (the API when it answers; default)")


def _add_asyncapi(sub: Any, common: argparse.ArgumentParser) -> None:
    asyncapi = sub.add_parser("asyncapi", parents=[common],
                              help="write an AsyncAPI 3 document of the topology and schemas")
    asyncapi.add_argument("--output", type=Path, metavar="FILE",
                          help="write here (default: stdout)")
    asyncapi.add_argument("--format", choices=("yaml", "json"), default="yaml",
                          help="yaml (default) or json")
    asyncapi.add_argument("--title", help="info.title (default: from the directory's name)")
    asyncapi.add_argument("--api-version", default="1.0.0", help="info.version (1.0.0)")


def _add_messages(sub: Any, common: argparse.ArgumentParser) -> None:
    """publish and follow: one message in, and where one message went."""
    publish = sub.add_parser("publish", parents=[common], help="publish one message to the ingress")
    publish.add_argument("--type", required=True, dest="message_type", help="message type")
    publish.add_argument("--version", type=int, dest="schema_version",
                         help="x-schema-version (default: newest)")
    publish.add_argument("--message-id", help="message_id (default: a new UUID)")
    publish.add_argument("--routing-key", help="routing key (default: the type)")
    publish.add_argument("--raw", action="store_true",
                         help="BODY is a file ('-': stdin) sent as it is, not checked as JSON "
                              "(to try the malformed path)")
    publish.add_argument("--content-type", default="application/json",
                         help="content_type property (application/json)")
    publish.add_argument("body", metavar="BODY",
                         help="the JSON body ('-' reads stdin); with --raw a file or '-'")
    follow = sub.add_parser("follow", parents=[common],
                            help="where one message went: the router's journal, else the "
                                 "dead letters")
    follow.add_argument("message_id", metavar="MESSAGE_ID")
    follow.add_argument("--http", default=DEFAULT_HTTP, metavar="HOST:PORT",
                        help=f"the router's --http address ({DEFAULT_HTTP})")
    follow.add_argument("--json", action="store_true",
                        help="print the journal's record (or the dead letters) as JSON")


def _dlq_filters() -> argparse.ArgumentParser:
    """The options that choose dead letters, shared by list, replay and purge."""
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--reason", help="x-mcp-reason (a glob: 'schema_*')")
    filters.add_argument("--type", dest="message_type", help="message type (a glob: 'Order*')")
    filters.add_argument("--id", dest="message_id", metavar="MESSAGE_ID", help="message_id")
    filters.add_argument("--since", metavar="TIME",
                         help="dead-lettered at or after TIME: ISO 8601, or an age: 30s, 2h, 1d")
    filters.add_argument("--until", metavar="TIME", help="dead-lettered at or before TIME")
    filters.add_argument("--limit", type=positive(int), metavar="N",
                         help="at most N dead letters, the oldest")
    return filters


def _add_dlq(sub: Any, common: argparse.ArgumentParser) -> None:
    filters = _dlq_filters()
    yes = argparse.ArgumentParser(add_help=False)
    yes.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    dlq = sub.add_parser("dlq", help="inspect, replay and purge dead letters")
    commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", parents=[common, filters],
                                  help="list dead letters (nothing is removed)")
    listing.add_argument("--group", action="store_true", help="count by reason and error")
    listing.add_argument("--json", action="store_true", help="a JSON array on stdout")
    show = commands.add_parser("show", parents=[common], help="one dead letter in full")
    show.add_argument("--id", dest="message_id", required=True, metavar="MESSAGE_ID",
                      help="the message_id of the dead letter (every letter with it is shown)")
    replay = commands.add_parser("replay", parents=[common, filters, yes],
                                 help="send dead letters back (to the ingress by default)")
    replay.add_argument("--to", metavar="EXCHANGE", help="replay to EXCHANGE instead")
    replay.add_argument("--routing-key", help="routing key (default: the original one, or "
                                              "where the copy was going with --to)")
    replay.add_argument("--dry-run", action="store_true",
                        help="say what would happen, change nothing")
    replay.add_argument("--rate", type=positive(float), default=100.0, metavar="N",
                        help="replays per second (100)")
    commands.add_parser("purge", parents=[common, filters, yes], help="delete dead letters")
