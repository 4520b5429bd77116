"""The ``--http`` endpoint: probes, metrics, services, reload, messages and the console.

The ASGI application (``router.web``) runs on uvicorn inside the router's own
event loop: ``start`` binds the socket itself (so a taken port is an
``OSError`` here, and port 0 works) and leaves the process's signals to the
router.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from router.web.app import make_app, sample_rates
from router.web.providers import Console, Lookup, Ops, Probe, Reload

__all__ = ["HealthServer", "console_token", "parse_address"]

log = logging.getLogger("router.http")

STARTUP_TIMEOUT = 10.0
LOOPBACK = "127.0.0.1"


def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``:PORT`` means loopback); ``ValueError`` if malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or LOOPBACK, int(port)


def console_token(environ: Mapping[str, str]) -> str | None:
    """The token changes ask for: ``MCP_CONSOLE_TOKEN``, else the contents of the file
    ``MCP_CONSOLE_TOKEN_FILE`` names; None when neither is set (changes over HTTP off).
    ``ValueError`` when the file cannot be read."""
    token = environ.get("MCP_CONSOLE_TOKEN", "").strip()
    path = environ.get("MCP_CONSOLE_TOKEN_FILE", "").strip()
    if token or not path:
        return token or None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read MCP_CONSOLE_TOKEN_FILE {path}: {exc}") from exc


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: SIGTERM and SIGHUP belong to the router."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class HealthServer:
    """Serves the operational endpoints, and the operator's console when given one."""

    ready: Probe
    metrics: Callable[[], bytes]
    reload: Reload | None = None
    pages: Mapping[str, Callable[[], Mapping[str, object]]] = field(default_factory=dict)
    messages: Lookup | None = None  # the journal: GET /messages/<message_id>
    token: str | None = field(default=None, repr=False)  # for POST /reload without a console
    console: Console | None = None
    _server: _Server | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        app = make_app(Ops(self.ready, self.metrics, self.reload, self.pages, self.messages),
                       self.console, self.token)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.listen(128)
        sock.setblocking(False)
        config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                                timeout_graceful_shutdown=2, server_header=False)
        self._server = _Server(config)
        self._tasks.append(asyncio.create_task(self._server.serve(sockets=[sock])))
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while not self._server.started:
                if self._tasks[0].done():
                    self._tasks[0].result()  # raises what stopped it
                await asyncio.sleep(0.01)
        if self.console is not None:
            self._tasks.append(asyncio.create_task(sample_rates(self.console)))
        return int(sock.getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.console is not None:
            await self.console.jobs.wait()
            await self.console.broker.close()
        self._tasks.clear()
