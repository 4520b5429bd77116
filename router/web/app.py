"""The ASGI application: the operational endpoints and, when given, the console.

``make_app`` takes plain callables and objects (``Ops``, ``Console``), so a
router, a supervisor of workers or ``mcp-router console`` serve the same
pages.  Every asset is a file of this package (no CDN, no build step);
htmx is vendored in ``static/`` with its licence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from router.errors import BrokerUnavailable
from router.web.actions import action_routes
from router.web.auth import Credentials
from router.web.ops import ops_routes
from router.web.pages import message_page, page_routes
from router.web.providers import Console, Ops
from router.web.render import refused
from router.web.session import session_routes

__all__ = ["make_app", "sample_rates"]

log = logging.getLogger("router.web")

STATIC = Path(__file__).with_name("static")
MAX_HEADERS = 100  # header lines one request may carry

# Pages are only ever framed, scripted and styled by themselves.
_SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
     b"img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class _SecurityHeaders:
    """Adds the headers above; refuses a request with more than ``MAX_HEADERS`` (431)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and len(scope["headers"]) > MAX_HEADERS:
            await PlainTextResponse("too many headers\n", status_code=431)(scope, receive, send)
            return
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)
        await self.app(scope, receive, with_headers)


def make_app(ops: Ops, console: Console | None = None, token: str | None = None) -> Starlette:
    """Ops endpoints always; the console's pages, actions and assets with ``console``.

    Without a console, ``token`` is what ``POST /reload`` asks for."""
    routes: list[BaseRoute] = ops_routes(
        ops, console.credentials if console else Credentials(token),
        console.audit if console else None,
        message_page(console, ops) if console else None)
    handlers = {}
    if console is not None:
        routes += page_routes(console) + action_routes(console) + session_routes(console)
        routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))

        async def broker_down(request: Request, exc: Exception) -> Response:
            return refused(request, console, 503, f"broker unavailable: {exc}")
        handlers[BrokerUnavailable] = broker_down
    return Starlette(routes=routes, exception_handlers=handlers,
                     middleware=[Middleware(_SecurityHeaders)])


async def sample_rates(console: Console) -> None:
    """Read the totals every ``sample_every`` seconds into ``console.rates``, for ever."""
    if console.totals is None:
        return
    while True:
        try:
            found = await console.totals()
        except Exception as exc:  # noqa: BLE001 -- a source that fails now and then: skip it
            log.debug("no rates this time: %s", exc)
        else:
            if found is not None:
                console.rates.add(time.monotonic(), found)
        await asyncio.sleep(console.sample_every)
