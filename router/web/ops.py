"""The operational endpoints: probes, metrics, JSON pages, reload and the journal.

``/healthz``, ``/readyz`` (200 or 503 with detail), ``/metrics`` (Prometheus
text), each JSON page (``/services``), ``GET /messages/<id>`` as JSON (HTML
for browsers when the console is on) and ``POST /reload``, which needs the
console token like every other change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from router.web.audit import AuditEntry, AuditLog
from router.web.auth import COOKIE, Credentials, Refused
from router.web.providers import Ops

__all__ = ["client_of", "ops_routes", "wants_json"]

Endpoint = Callable[[Request], Awaitable[Response]]


def client_of(request: Request) -> str:
    return request.client.host if request.client else "?"


def wants_json(request: Request) -> bool:
    """JSON unless the client prefers HTML (a browser's ``Accept`` lists text/html first)."""
    accept = request.headers.get("accept", "")
    html, json_at = accept.find("text/html"), accept.find("application/json")
    return html < 0 or (0 <= json_at < html)


def ops_routes(ops: Ops, credentials: Credentials, audit: AuditLog | None,
               message_page: Endpoint | None = None) -> list[BaseRoute]:
    """The routes of ``ops``; ``message_page`` renders ``/messages/<id>`` for browsers."""

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        ok, detail = ops.ready()
        return JSONResponse({"ready": ok, **detail}, status_code=200 if ok else 503)

    async def metrics(_: Request) -> Response:
        return Response(ops.metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def json_page(source: Callable[[], object]) -> Endpoint:
        async def serve(_: Request) -> Response:
            return JSONResponse(source())
        return serve

    async def message(request: Request) -> Response:
        if message_page is not None and not wants_json(request):
            return await message_page(request)
        message_id = request.path_params["message_id"]
        found = ops.messages(message_id) if ops.messages is not None else None
        if found is None:
            why = "no journal in this process" if ops.messages is None else \
                "not in the journal (never seen, or dropped as the oldest)"
            return JSONResponse({"message_id": message_id, "error": why}, status_code=404)
        return JSONResponse(dict(found))

    routes: list[BaseRoute] = [
        Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics),
        Route("/messages/{message_id:path}", message),
        Route("/reload", _reload(ops, credentials, audit), methods=["POST"]),
    ]
    routes += [Route(path, json_page(source)) for path, source in ops.pages.items()]
    return routes


def _reload(ops: Ops, credentials: Credentials, audit: AuditLog | None) -> Endpoint:
    """``POST /reload``: with the token, reload and audit it; 422 with the problems if refused."""

    async def reload(request: Request) -> Response:
        if ops.reload is None:
            return JSONResponse({"error": "nothing to reload here"}, status_code=404)
        verdict = credentials.check({k.lower(): v for k, v in request.headers.items()},
                                    request.cookies.get(COOKIE), None, client_of(request))
        if isinstance(verdict, Refused):
            return JSONResponse({"error": verdict.why}, status_code=verdict.status)
        ok, detail = await ops.reload()
        if audit is not None:
            entry = AuditEntry.of(datetime.now(UTC), verdict.who, "reload", [], count=0,
                                  reloaded=ok)
            await asyncio.to_thread(audit.record, entry)
        return JSONResponse(detail, status_code=200 if ok else 422)

    return reload
