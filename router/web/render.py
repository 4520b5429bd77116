"""Pages from the Jinja2 templates, escaped by default, with the session's context."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from router.tools.lettertext import when
from router.web.auth import COOKIE
from router.web.providers import Console

__all__ = ["page", "refused"]

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,  # every value from a message is text, never markup
    trim_blocks=True, lstrip_blocks=True,
)
_ENV.globals["when"] = when


def base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def page(request: Request, console: Console, name: str, status: int = 200,
         **context: Any) -> HTMLResponse:
    """Render ``name`` with who is signed in and the CSRF value of the session."""
    cookie = request.cookies.get(COOKIE)
    given = context.get("given", {})

    def query(**extra: str) -> str:
        return urlencode({**given, **extra})

    context.setdefault("page", "")
    context.setdefault("problem", None)
    html = _ENV.get_template(name).render(
        base=base(request), csrf=console.credentials.csrf(cookie),
        operator=console.credentials.operator(cookie), writable=console.credentials.writable,
        query=query, title=context.pop("title", "console"), **context)
    return HTMLResponse(html, status_code=status)


def refused(request: Request, console: Console, status: int, why: str) -> HTMLResponse:
    heading = "Sign in first" if status == 401 else "Refused"
    return page(request, console, "refused.html", status=status, title=heading,
                heading=heading, why=why, status_code=status, page="")
