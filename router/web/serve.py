"""Starting the console: its settings from the environment, and ``mcp-router console``.

``MCP_CONSOLE_TOKEN`` (or a file named by ``MCP_CONSOLE_TOKEN_FILE``) is the
token changes need; ``MCP_CONSOLE_AUDIT_LOG`` where the audit log goes;
``MCP_JAEGER_URL`` makes trace ids links into Jaeger.  The entry point hands
the environment in; nothing here reads ``os.environ``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from router.broker.amqp import redact
from router.config.configuration import Config
from router.runtime.service import RouterService
from router.web.audit import AuditLog
from router.web.auth import Credentials
from router.web.broker import ConsoleBroker
from router.web.flow import Totals, totals
from router.web.providers import Console

if TYPE_CHECKING:
    from router.runtime.http import HealthServer

__all__ = ["ConsoleSettings", "metrics_over_http", "router_server", "serve_console"]

log = logging.getLogger("router.web")


def _default_audit(env: Mapping[str, str]) -> Path:
    state = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", ".")) / ".local" / "state")
    return Path(state) / "mcp-router" / "audit.jsonl"


@dataclass(frozen=True)
class ConsoleSettings:
    credentials: Credentials
    audit_log: Path
    jaeger_url: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str], audit_log: Path | None = None) -> ConsoleSettings:
        """``ValueError`` when the token file cannot be read."""
        from router.runtime.http import console_token  # noqa: PLC0415 -- http imports this package

        token = console_token(env)
        audit = audit_log or (Path(env["MCP_CONSOLE_AUDIT_LOG"])
                              if env.get("MCP_CONSOLE_AUDIT_LOG") else _default_audit(env))
        jaeger = (env.get("MCP_JAEGER_URL") or "").rstrip("/") or None
        return cls(Credentials(token), audit, jaeger)

    def console(self, config: Callable[[], Config], amqp_url: str, **sources: object) -> Console:
        """A console on the broker at ``amqp_url``; ``sources`` as ``Console`` takes them.

        ``sources`` are typed ``object`` here; ``Console`` names the type of each.
        """
        return Console(config=config, broker=ConsoleBroker(amqp_url, config),
                       credentials=self.credentials, audit=AuditLog(self.audit_log),
                       jaeger_url=self.jaeger_url, **sources)  # type: ignore[arg-type]  # as said


def metrics_over_http(url: str) -> Callable[[], asyncio.Future[Totals | None]]:
    """Totals from another router's ``/metrics`` (``--router URL``)."""
    target = url.rstrip("/") + "/metrics"

    def fetch() -> Totals:
        with urllib.request.urlopen(target, timeout=2) as response:  # noqa: S310 -- operator's URL
            return totals(response.read())

    def read() -> asyncio.Future[Totals | None]:
        return asyncio.ensure_future(asyncio.to_thread(fetch))
    return read


async def serve_console(config: Config, amqp_url: str, address: tuple[str, int], *,
                        settings: ConsoleSettings, router_url: str | None) -> int:
    """``mcp-router console``: the pages without a router, until SIGTERM or Ctrl-C."""
    from router.runtime.http import HealthServer  # noqa: PLC0415 -- http imports this package

    console = settings.console(lambda: config, amqp_url,
                               totals=metrics_over_http(router_url) if router_url else None)
    await console.broker.depths([config.topology.dead_letter.queue])  # fail early, clearly

    def ready() -> tuple[bool, dict[str, object]]:
        return True, {"broker": redact(amqp_url), "console": True}

    server = HealthServer(ready, lambda: b"", console=console)
    host, port = address
    try:
        bound = await server.start(host, port)
    except OSError as exc:
        await console.broker.close()
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    log.info("console on http://%s:%d/ (broker %s, changes %s, audit log %s)", host, bound,
             redact(amqp_url), "need the token" if settings.credentials.writable else
             "disabled: no MCP_CONSOLE_TOKEN", settings.audit_log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()
    return 0


def router_server(service: RouterService, amqp_url: str,
                  settings: ConsoleSettings) -> HealthServer:
    """The ``--http`` server of ``mcp-router run``: probes, metrics and the console."""
    from router.runtime.http import HealthServer  # noqa: PLC0415 -- http imports this package

    def probe() -> tuple[bool, dict[str, object]]:
        last = service.last_reload
        return service.ready, {"broker": redact(amqp_url), "node": service.node,
                               "error": service.last_error,
                               "last_reload": None if last is None else last.as_dict(),
                               "circuits": service.circuits()}

    async def reload() -> tuple[bool, dict[str, object]]:
        result = await service.reload()
        return result.ok, result.as_dict()

    async def current_totals() -> Totals:
        return totals(service.metrics.render())

    console = settings.console(lambda: service.config, amqp_url, totals=current_totals,
                               circuits=service.circuits, services=service.consumers.listing,
                               branches=service.loads.snapshot,
                               shadows=service.metrics.shadows)
    return HealthServer(probe, service.metrics.render, reload,
                        pages={"/services": service.consumers.listing},
                        messages=service.journal.get, console=console)
