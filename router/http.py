"""The ``--http`` endpoint: health, readiness, metrics, services and ``POST /reload``.

A deliberately tiny HTTP/1.1 server on ``asyncio.start_server`` (one request
per connection, GET only): probes and Prometheus need nothing more, and it
adds no dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["HealthServer", "parse_address"]

Probe = Callable[[], tuple[bool, dict[str, object]]]


def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``:PORT`` means all interfaces); ``ValueError`` if malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 -- ":PORT" asks for all


@dataclass
class HealthServer:
    """Serves liveness, readiness (with detail) and metrics."""

    ready: Probe
    metrics: Callable[[], bytes]
    reload: Callable[[], Awaitable[tuple[bool, dict[str, object]]]] | None = None
    pages: Mapping[str, Callable[[], dict[str, object]]] = field(default_factory=dict)  # JSON
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
            return 200, "application/json", json.dumps(self.pages[path]()).encode() + b"\n"
        return 404, "text/plain; charset=utf-8", b"not found\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (line := await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n",
                                                                                  b""):
                del line  # headers are not needed
            parts = request.decode("latin-1").split()
            if len(parts) < 2:
                status, kind, body = 400, "text/plain", b"bad request\n"
            elif parts[0] == "POST" and parts[1] == "/reload" and self.reload is not None:
                ok, detail = await self.reload()
                body = json.dumps(detail).encode() + b"\n"
                status, kind = (200 if ok else 422), "application/json"
            elif parts[0] not in ("GET", "HEAD"):
                status, kind, body = 405, "text/plain", b"method not allowed\n"
            else:
                status, kind, body = self._respond(parts[1].split("?", 1)[0])
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found",
                      405: "Method Not Allowed", 422: "Unprocessable Content",
                      503: "Service Unavailable"}[status]
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
