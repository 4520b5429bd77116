"""Signing in and out of the console with the token (see ``router.web.auth``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from router.web.auth import COOKIE, same_origin
from router.web.providers import Console
from router.web.render import base, page, refused

__all__ = ["session_routes"]


def _headers(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def session_routes(console: Console) -> list[BaseRoute]:
    """``POST /login`` (token and name; sets the session cookie) and ``POST /logout``."""

    async def login(request: Request) -> Response:
        form = await request.form()
        if not same_origin(_headers(request)):
            return refused(request, console, 403, "cross-origin request refused")
        cookie = console.credentials.sign_in(str(form.get("token", "")),
                                             str(form.get("name", "")))
        if cookie is None:
            return page(request, console, "login.html", status=403, title="Sign in",
                        problem="wrong token" if console.credentials.writable else
                        "no console token is configured: the console is read-only",
                        next="/")
        target = str(form.get("next", "/"))
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        response = RedirectResponse(f"{base(request)}{target}", status_code=303)
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict",
                            path=base(request) or "/")
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse(f"{base(request)}/", status_code=303)
        if same_origin(_headers(request)):
            response.delete_cookie(COOKIE, path=base(request) or "/")
        return response

    return [Route("/login", login, methods=["POST"]), Route("/logout", logout, methods=["POST"])]
