"""The ``--http`` endpoint: health, readiness, metrics, services, the journal and reload.

A deliberately tiny HTTP/1.1 server on ``asyncio.start_server`` (one request
per connection): probes and Prometheus need nothing more, and it adds no
dependency.  ``GET /messages/<message_id>`` serves the journal's record of
one message (404 when it is not remembered).

What changes the router's state (``POST /reload``) needs the console token,
as ``Authorization: Bearer <token>``: 401 without a credential, 403 with a
wrong one, and 403 for everyone when no token is configured (SIGHUP and the
file watcher still reload).  ``HOST`` may be left out (``:8080``): that
binds the loopback interface, never all of them by accident.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

__all__ = ["HealthServer", "console_token", "parse_address"]

Probe = Callable[[], tuple[bool, dict[str, object]]]
Lookup = Callable[[str], dict[str, object] | None]
LOOPBACK = "127.0.0.1"
MAX_HEADERS = 100  # header lines read from one request
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 422: "Unprocessable Content",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}
_Response = tuple[int, str, bytes]


def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``:PORT`` means loopback); ``ValueError`` if malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or LOOPBACK, int(port)


def console_token(environ: Mapping[str, str]) -> str | None:
    """The token ``POST /reload`` asks for: ``MCP_CONSOLE_TOKEN``, else the contents of the
    file ``MCP_CONSOLE_TOKEN_FILE`` names; None when neither is set (reload over HTTP off).
    ``ValueError`` when the file cannot be read."""
    token = environ.get("MCP_CONSOLE_TOKEN", "").strip()
    path = environ.get("MCP_CONSOLE_TOKEN_FILE", "").strip()
    if token or not path:
        return token or None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read MCP_CONSOLE_TOKEN_FILE {path}: {exc}") from exc


def _json(status: int, data: object) -> _Response:
    return status, "application/json", json.dumps(data).encode() + b"\n"


@dataclass
class HealthServer:
    """Serves liveness, readiness (with detail) and metrics."""

    ready: Probe
    metrics: Callable[[], bytes]
    reload: Callable[[], Awaitable[tuple[bool, dict[str, object]]]] | None = None
    pages: Mapping[str, Callable[[], dict[str, object]]] = field(default_factory=dict)  # JSON
    messages: Lookup | None = None  # the journal: GET /messages/<message_id>
    token: str | None = field(default=None, repr=False)  # for POST /reload
    server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self.server = await asyncio.start_server(self._serve, host, port)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def _respond(self, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path == "/readyz":
            ok, detail = self.ready()
            body = json.dumps({"ready": ok, **detail}).encode() + b"\n"
            return (200 if ok else 503), "application/json", body
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics()
        if path in self.pages:
            return _json(200, self.pages[path]())
        if path.startswith("/messages/") and self.messages is not None:
            message_id = unquote(path.removeprefix("/messages/"))
            found = self.messages(message_id)
            return _json(200, found) if found is not None else _json(404, {
                "message_id": message_id, "error": "not in the journal (never seen, or "
                                                   "dropped as the oldest)"})
        return 404, "text/plain; charset=utf-8", b"not found\n"

    def _denied(self, headers: Mapping[str, str]) -> _Response | None:
        """Why a state-changing request may not go on (None: it may)."""
        if not self.token:
            return _json(403, {"error": "no console token is configured: set MCP_CONSOLE_TOKEN "
                                        "or MCP_CONSOLE_TOKEN_FILE (or send SIGHUP)"})
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return _json(401, {"error": "send Authorization: Bearer <console token>"})
        if not hmac.compare_digest(credential.strip().encode(), self.token.encode()):
            return _json(403, {"error": "wrong console token"})
        return None

    async def _post(self, path: str, headers: Mapping[str, str]) -> _Response:
        if path != "/reload" or self.reload is None:
            return 405, "text/plain", b"method not allowed\n"
        denied = self._denied(headers)
        if denied is not None:
            return denied
        ok, detail = await self.reload()
        return _json(200 if ok else 422, detail)

    @staticmethod
    async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str] | None:
        """The request's headers by lower-case name; None when there are too many."""
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = await asyncio.wait_for(reader.readline(), 5)
            if line in (b"\r\n", b"\n", b""):
                return headers
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            headers = await self._read_headers(reader)
            parts = request.decode("latin-1").split()
            if headers is None:
                status, kind, body = 431, "text/plain", b"too many headers\n"
            elif len(parts) < 2:
                status, kind, body = 400, "text/plain", b"bad request\n"
            elif parts[0] == "POST":
                status, kind, body = await self._post(parts[1].split("?", 1)[0], headers)
            elif parts[0] not in ("GET", "HEAD"):
                status, kind, body = 405, "text/plain", b"method not allowed\n"
            else:
                status, kind, body = self._respond(parts[1].split("?", 1)[0])
            reason = _REASONS[status]
            head_only = len(parts) >= 2 and parts[0] == "HEAD"
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + (b"" if head_only else body))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
