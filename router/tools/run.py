"""``mcp-router run``: declare the topology and route until SIGTERM or SIGINT.

One ``RouterService`` in this process (``--workers`` hands over to
``router.runtime.supervisor`` instead), with its tracing, its optional OTLP
metrics and its ``--http`` endpoint, which this module starts before routing
and closes after the service drained.  A reload comes from SIGHUP, from a
changed configuration file (``--watch``) or from ``POST /reload``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path

from router import __version__
from router.broker.amqp import redact
from router.config.configuration import Config
from router.config.keys import kek_from
from router.config.reload import Watcher
from router.observe.journal import Journal
from router.observe.metrics import Metrics
from router.observe.otelmetrics import start_metrics_export
from router.observe.telemetry import Telemetry, TelemetrySettings
from router.runtime.http import HealthServer, parse_address
from router.runtime.service import RouterService, Settings
from router.tools.terminal import fail
from router.web.serve import ConsoleSettings, router_server

__all__ = ["run_router"]

log = logging.getLogger("router")


async def run_router(args: argparse.Namespace, config: Config, settings: TelemetrySettings,
                     environ: Mapping[str, str]) -> int:
    """Route until stopped; 1 when it cannot start (a shared limit without Redis, a taken port)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    shared = [rule for rule in config.policies.rate_limits if rule.shared]
    if shared and not args.redis_url:
        return fail(f"rate limit {shared[0].match!r} at {shared[0].where} is shared by the "
                    "replicas: give its Redis with --redis-url or MCP_REDIS_URL")
    telemetry = Telemetry.start(settings)
    service = RouterService(config, Settings(args.amqp_url, prefetch=args.prefetch,
                                             publish_channels=args.publish_channels,
                                             kek=kek_from(environ), redis_url=args.redis_url),
                            Metrics(), tracer=telemetry.tracer,
                            journal=Journal(args.journal_size))
    stop_metrics = _export(service, settings)
    health = await _serve_http(args, service, environ) if args.http else None
    if isinstance(health, str):
        await asyncio.to_thread(telemetry.shutdown)
        await asyncio.to_thread(stop_metrics)
        return fail(health)
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


def _export(service: RouterService, settings: TelemetrySettings) -> Callable[[], None]:
    """Say where traces go; start the OTLP metrics export when asked. Returns its stop."""
    if settings.enabled:
        log.info("exporting traces to %s (%s, sampler %s)", settings.endpoint or "console",
                 settings.protocol, settings.sampler)
    if settings.metrics_endpoint is None:
        return lambda: None
    stop_metrics = start_metrics_export(service.metrics, settings)
    log.info("exporting metrics to %s every %d ms", settings.metrics_endpoint,
             settings.metrics_interval_ms)
    return stop_metrics


async def _serve_http(args: argparse.Namespace, service: RouterService,
                      environ: Mapping[str, str]) -> HealthServer | str:
    """The ``--http`` server, listening; or why it cannot listen."""
    host, port = parse_address(args.http)
    health = router_server(service, args.amqp_url,
                           ConsoleSettings.from_env(environ, args.audit_log))
    try:
        port = await health.start(host, port)
    except OSError as exc:
        return (f"cannot serve --http on {host}:{port}: "
                f"{os.strerror(exc.errno) if exc.errno else exc}; "
                "choose another address (make run HTTP=127.0.0.1:8081)")
    log.info("http on %s:%d (the console at /, /healthz /readyz /metrics /services "
             "/messages/<id>%s)", host, port, ", POST /reload" if args.console_token else
             "; changes and POST /reload are off: no MCP_CONSOLE_TOKEN")
    return health


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
