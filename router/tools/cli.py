"""``mcp-router``: run, check, init, apply, plan, asyncapi, publish, follow, services, dlq,
console.

The only module that reads ``os.environ`` (``MCP_AMQP_URL``, ``MCP_LOG_LEVEL``,
``MCP_CONSOLE_TOKEN``...).  Every failure a user can cause ends with a clear
message on stderr, never a traceback.  Exit codes, the same for every
command: 0 done, 1 problems found or the operation failed (an unreachable
broker included), 2 a usage error (argparse's), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.trace import SpanKind

from router import __version__
from router.broker.amqp import DEFAULT_URL, broker_urls, broker_user, connect, redact
from router.broker.declare import declare_config
from router.broker.inventory import compare, fetch_inventory, management_url_for
from router.broker.plan import plan_config
from router.config.alternatives import plan_lines
from router.config.configuration import Config, check_config, load_config
from router.config.keys import kek_from
from router.config.reload import Watcher
from router.core.counts import plural
from router.discovery.census import DEFAULT_WAIT, format_services, live_problems, take_census
from router.errors import BrokerUnavailable, ConfigError, DeliveryFailed, TopologyConflict
from router.observe.journal import DEFAULT_SIZE, Journal
from router.observe.logs import configure as configure_logs
from router.observe.metrics import Metrics
from router.observe.otelmetrics import start_metrics_export
from router.observe.spans import publish_attributes, publish_name
from router.observe.telemetry import Telemetry, TelemetrySettings
from router.observe.tracing import inject, span_trace_id
from router.runtime.http import HealthServer, console_token, parse_address
from router.runtime.service import RouterService, Settings
from router.runtime.supervisor import child_env, run_fleet
from router.tools.asyncapi import asyncapi_document
from router.tools.dlq import run_dlq
from router.tools.follow import DEFAULT_HTTP, run_follow
from router.tools.keyscli import add_keys_parser, key_problems, run_keys
from router.tools.scaffold import run_init
from router.web.serve import ConsoleSettings, router_server, serve_console

__all__ = ["main"]

log = logging.getLogger("router")


def _parser() -> argparse.ArgumentParser:
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

    run = sub.add_parser("run", parents=[common], help="declare topology, route until stopped")
    run.add_argument("--http", metavar="HOST:PORT",
                     help="serve the console, /healthz, /readyz, /metrics, /messages/<id> "
                          "(':PORT' binds loopback; changes and POST /reload need "
                          "$MCP_CONSOLE_TOKEN)")
    run.add_argument("--journal-size", type=_not_negative, default=DEFAULT_SIZE, metavar="N",
                     help=f"messages remembered for follow ({DEFAULT_SIZE:,}; 0 turns it off)")
    run.add_argument("--prefetch", type=_positive(int), default=256,
                     help="messages in flight (256)")
    run.add_argument("--redis-url", default=os.environ.get("MCP_REDIS_URL"), metavar="URL",
                     help="Redis for rate-limit rules shared by replicas (default: "
                          "$MCP_REDIS_URL)")
    run.add_argument("--watch", type=float, default=1.0, metavar="SECONDS",
                     help="reload when configuration files change, checked this often "
                          "(1; 0 turns it off); SIGHUP and POST /reload (with the token) "
                          "always work")
    run.add_argument("--workers", type=_positive(int), metavar="N",
                     help="N routing processes under one supervisor (one /metrics, one /readyz)")
    run.add_argument("--publish-channels", type=_positive(int), default=8,
                     help="confirming channels for publishing (8)")
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
                      default=os.environ.get("MCP_MANAGEMENT_URL"),
                      help="RabbitMQ management API, e.g. http://user:pass@host:15672/ "
                           "(default: MCP_MANAGEMENT_URL, else port 15672 of the broker "
                           "host with the AMQP credentials; passive declarations when it "
                           "does not answer)")
    plan.add_argument("--via", choices=("auto", "management", "passive"), default="auto",
                      help="how to read the broker: the management API, passive "
                           "declarations, or auto (the API when it answers; default)")
    asyncapi = sub.add_parser("asyncapi", parents=[common],
                              help="write an AsyncAPI 3 document of the topology and schemas")
    asyncapi.add_argument("--output", type=Path, metavar="FILE",
                          help="write here (default: stdout)")
    asyncapi.add_argument("--format", choices=("yaml", "json"), default="yaml",
                          help="yaml (default) or json")
    asyncapi.add_argument("--title", help="info.title (default: from the directory's name)")
    asyncapi.add_argument("--api-version", default="1.0.0", help="info.version (1.0.0)")

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
    init = sub.add_parser("init", help="write a small working configuration into DIR")
    init.add_argument("directory", type=Path, metavar="DIR")
    _dlq_parser(sub, common)
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


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _dlq_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--reason", help="x-mcp-reason (a glob: 'schema_*')")
    filters.add_argument("--type", dest="message_type", help="message type (a glob: 'Order*')")
    filters.add_argument("--id", dest="message_id", metavar="MESSAGE_ID", help="message_id")
    filters.add_argument("--since", metavar="TIME",
                         help="dead-lettered at or after TIME: ISO 8601, or an age: 30s, 2h, 1d")
    filters.add_argument("--until", metavar="TIME", help="dead-lettered at or before TIME")
    filters.add_argument("--limit", type=_positive(int), metavar="N",
                         help="at most N dead letters, the oldest")
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
    replay.add_argument("--rate", type=_positive(float), default=100.0, metavar="N",
                        help="replays per second (100)")
    commands.add_parser("purge", parents=[common, filters, yes], help="delete dead letters")


def _fail(message: str) -> int:
    print(f"mcp-router: {message}", file=sys.stderr)
    return 1


def _load(directory: Path) -> Config | int:
    try:
        return load_config(directory)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return _fail(f"{plural(len(exc.problems), 'problem')} in {directory}")


def cmd_check(args: argparse.Namespace) -> int:
    problems = check_config(args.config)
    if not problems:
        problems = key_problems(load_config(args.config), os.environ)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return _fail(f"{plural(len(problems), 'problem')} in {args.config}")
    config = load_config(args.config)
    if args.live:
        census = asyncio.run(take_census(args.amqp_url, args.wait,
                                         config.topology.control.exchange))
        unconsumed = live_problems(config, census, str(args.config / "topology.yaml"))
        for problem in unconsumed:
            print(problem, file=sys.stderr)
        print(f"live: {plural(len(census.live()), 'service instance')}, {len(unconsumed)} "
              f"of {plural(len(config.topology.routes), 'route')} without a live consumer")
        if unconsumed:
            return _fail(f"{plural(len(unconsumed), 'route')} without a live consumer")
    t = config.topology
    versions = sum(len(v) for v in config.registry.types.values())
    p = config.policies
    counts = [plural(len(t.exchanges), "exchange"), plural(len(t.queues), "queue"),
              plural(len(t.bindings), "binding"), plural(len(t.routes), "route"),
              f"{plural(len(config.registry.types), 'message type')} "
              f"({plural(versions, 'schema version')})", plural(len(p.retry), "retry rule"),
              plural(len(p.authorization.rules), "authorization rule"),
              plural(len(p.limits), "limit"), plural(len(p.priority), "priority", "priorities")]
    print("ok: " + ", ".join(counts))
    return 0


def cmd_asyncapi(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if isinstance(config, int):
        return config
    try:
        document = asyncapi_document(config, amqp_url=args.amqp_url, title=args.title,
                                     version=args.api_version)
    except ValueError as exc:  # e.g. a port that is not a number in --amqp-url
        return _fail(f"cannot describe the broker URL {redact(args.amqp_url)}: {exc}")
    text = (json.dumps(document, indent=2, ensure_ascii=False) + "\n" if args.format == "json"
            else yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror or exc}")
    print(f"wrote {args.output}: {plural(len(document['channels']), 'channel')}, "
          f"{plural(len(document['operations']), 'operation')}, "
          f"{plural(len(document['components']['messages']), 'message')}", file=sys.stderr)
    return 0


async def _apply(config: Config, url: str) -> int:
    connection = await connect(url, "mcp-router apply")
    try:
        for entity in await declare_config(connection, config):
            print(f"declared {entity}")
    finally:
        await connection.close()
    return 0


async def _services(args: argparse.Namespace, config: Config) -> int:
    census = await take_census(args.amqp_url, args.wait, config.topology.control.exchange)
    print(format_services(census, as_json=args.json))
    return 0


async def _plan(config: Config, url: str, management_url: str | None, via: str) -> int:
    # Any node of a cluster shows what every node holds: ask the first one's API.
    api = management_url or management_url_for(broker_urls(url)[0])
    try:
        if via == "passive":
            raise OSError("not asked for")
        plan = compare(config, await fetch_inventory(api, broker_urls(url)[0]))
        how = f"read through the management API at {redact(api)}"
    except OSError as exc:
        if via == "management":
            print(f"error: management API at {redact(api)}: {exc}", file=sys.stderr)
            return 1
        connection = await connect(url, "mcp-router plan")
        try:
            plan = await plan_config(connection, config)
        finally:
            await connection.close()
        how = ("by passive declarations (bindings are not compared; apply declares them "
               "idempotently)" if via == "passive" else "by passive declarations (no "
               f"management API answered at {redact(api)}; bindings are not compared)")
    for line in plan_lines(config.topology):  # how copies are shared out (no broker needed)
        print(line)
    for entity in plan.create:
        print(f"+ create {entity}")
    for conflict in plan.conflicts:
        print(f"! conflict {conflict}")
    print(f"{len(plan.create)} to create, {len(plan.unchanged)} unchanged, "
          f"{len(plan.conflicts)} in conflict; {how}")
    return 1 if plan.conflicts else 0


def _body(args: argparse.Namespace) -> bytes | str:
    """The body to publish, or why it cannot be."""
    if args.raw:
        try:
            return sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
        except OSError as exc:
            return f"cannot read {args.body}: {exc.strerror or exc}"
    text = sys.stdin.read() if args.body == "-" else args.body
    try:
        json.loads(text)
    except ValueError as exc:
        return f"the body is not JSON: {exc} (--raw sends a file as it is)"
    return text.encode("utf-8", "surrogateescape")


async def _publish(args: argparse.Namespace, config: Config,
                   settings: TelemetrySettings) -> int:
    from router.broker.servicelinks import (  # noqa: PLC0415 -- only this command publishes
        ingress_exchange,
        publish_persistent,
    )
    from router.core.envelope import Properties  # noqa: PLC0415 -- with the above

    body = _body(args)
    if isinstance(body, str):
        return _fail(body)
    headers: dict[str, object] = {}
    if args.schema_version is not None:
        headers["x-schema-version"] = args.schema_version
    telemetry = Telemetry.start(settings)
    exchange_name = config.topology.ingress.exchange
    span = telemetry.tracer.start_span(publish_name(exchange_name), kind=SpanKind.PRODUCER,
                                       attributes=publish_attributes(
                                           exchange_name, args.routing_key or args.message_type,
                                           message_id=args.message_id, body_size=len(body)))
    headers.update(inject(span))
    message = Properties(content_type=args.content_type, type=args.message_type,
                         message_id=args.message_id or str(uuid.uuid4()), headers=headers,
                         user_id=broker_user(args.amqp_url))
    connection = await connect(args.amqp_url, "mcp-router publish-cli")
    try:
        exchange = await ingress_exchange(connection, config.topology.ingress.exchange)
        await publish_persistent(exchange, args.routing_key or args.message_type, body, message,
                                 confirm_timeout=None)
    except Exception as exc:  # noqa: BLE001 -- reported to the user, not raised
        hint = " (mcp-router apply, or run, declares the topology)" \
            if "NOT_FOUND" in str(exc) else ""
        return _fail(f"publish failed: {exc}{hint}")
    finally:
        span.end()
        telemetry.shutdown()
        await connection.close()
    trace_id = span_trace_id(span)
    print(f"published {message.message_id} type={args.message_type} trace_id={trace_id}")
    return 0


async def _watch(directory: Path, interval: float, reload: Callable[[], None],
                 stop: asyncio.Event) -> None:
    """Reload when a configuration file changes (polled every ``interval`` s; 0: never)."""
    if interval <= 0:
        return
    watcher = Watcher(directory)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        if not stop.is_set() and await asyncio.to_thread(watcher.changed):
            log.info("configuration files changed: reloading")
            reload()


async def _run(args: argparse.Namespace, config: Config, settings: TelemetrySettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    shared = [rule for rule in config.policies.rate_limits if rule.shared]
    if shared and not args.redis_url:
        return _fail(f"rate limit {shared[0].match!r} at {shared[0].where} is shared by the "
                     "replicas: give its Redis with --redis-url or MCP_REDIS_URL")
    telemetry = Telemetry.start(settings)
    service = RouterService(config, Settings(args.amqp_url, prefetch=args.prefetch,
                                             publish_channels=args.publish_channels,
                                             kek=kek_from(os.environ),
                                             redis_url=args.redis_url),
                            Metrics(), tracer=telemetry.tracer,
                            journal=Journal(args.journal_size))
    if settings.enabled:
        log.info("exporting traces to %s (%s, sampler %s)", settings.endpoint or "console",
                 settings.protocol, settings.sampler)
    stop_metrics: Callable[[], None] = lambda: None  # noqa: E731 -- a no-op by default
    if settings.metrics_endpoint is not None:
        stop_metrics = start_metrics_export(service.metrics, settings)
        log.info("exporting metrics to %s every %d ms", settings.metrics_endpoint,
                 settings.metrics_interval_ms)
    health: HealthServer | None = None
    if args.http:
        host, port = parse_address(args.http)

        health = router_server(service, args.amqp_url,
                               ConsoleSettings.from_env(os.environ, args.audit_log))
        try:
            port = await health.start(host, port)
        except OSError as exc:
            await asyncio.to_thread(telemetry.shutdown)
            return _fail(f"cannot serve --http on {host}:{port}: "
                         f"{os.strerror(exc.errno) if exc.errno else exc}; "
                         "choose another address (make run HTTP=127.0.0.1:8081)")
        log.info("http on %s:%d (the console at /, /healthz /readyz /metrics /services "
                 "/messages/<id>%s)", host, port, ", POST /reload" if args.console_token else
                 "; changes and POST /reload are off: no MCP_CONSOLE_TOKEN")
    reloading: set[asyncio.Task[object]] = set()

    def reload_soon() -> None:
        task = asyncio.ensure_future(service.reload())
        reloading.add(task)
        task.add_done_callback(reloading.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_soon)
    watch = asyncio.create_task(_watch(config.directory, args.watch, reload_soon, stop))
    log.info("mcp-router %s routing %s via %s", __version__, config.directory,
             redact(args.amqp_url))
    try:
        await service.run(stop)
    finally:
        watch.cancel()
        if health is not None:
            await health.close()
        await asyncio.to_thread(telemetry.shutdown)  # flushes the last spans
        await asyncio.to_thread(stop_metrics)
    log.info("stopped")
    return 0


def _runner() -> Callable[[Coroutine[Any, Any, int]], int]:
    try:
        import uvloop  # noqa: PLC0415 -- optional speed-up where it is installed
    except ImportError:
        return asyncio.run
    return uvloop.run


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Every node of a cluster, in order: repeated --amqp-url, else MCP_AMQP_URL (commas).
    args.amqp_url = ",".join(getattr(args, "amqp_url", None)
                             or [os.environ.get("MCP_AMQP_URL", DEFAULT_URL)])
    try:
        configure_logs(os.environ.get("MCP_LOG_LEVEL", "INFO"),
                       os.environ.get("MCP_LOG_FORMAT", "text"))
        telemetry = TelemetrySettings.from_env(
            os.environ, "mcp-router" if args.command == "run" else "mcp-router-cli")
    except ValueError as exc:
        return _fail(str(exc))
    if args.command == "keys":
        return run_keys(args, os.environ)
    if args.command == "run":
        try:
            args.console_token = console_token(os.environ)
        except ValueError as exc:
            return _fail(str(exc))
    offline: Callable[[argparse.Namespace], int] | None = {
        "check": cmd_check, "asyncapi": cmd_asyncapi, "init": lambda a: run_init(a.directory),
    }.get(args.command)
    try:
        if offline is not None:  # no event loop (check --live makes its own), no config load
            return offline(args)
        return _online(args, telemetry, argv)
    except TopologyConflict as exc:
        for conflict in exc.conflicts:
            print(f"conflict: {conflict}", file=sys.stderr)
        return _fail("the broker holds entities that differ from the topology; "
                     "change the file or delete those entities")
    except ConfigError as exc:  # data keys that cannot be unwrapped
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return _fail(f"{len(exc.problems)} problem(s) with the data keys")
    except (BrokerUnavailable, DeliveryFailed, ValueError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


def _online(args: argparse.Namespace, telemetry: TelemetrySettings,
            argv: Sequence[str] | None) -> int:
    """The commands that load the configuration and run in an event loop."""
    config = _load(args.config)
    if isinstance(config, int):
        return config
    runner = _runner()
    commands: dict[str, Callable[[], Coroutine[Any, Any, int]]] = {
        "services": lambda: _services(args, config),
        "apply": lambda: _apply(config, args.amqp_url),
        "plan": lambda: _plan(config, args.amqp_url, args.management_url, args.via),
        "publish": lambda: _publish(args, config, telemetry),
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
    return runner(_run(args, config, telemetry))


if __name__ == "__main__":
    sys.exit(main())
