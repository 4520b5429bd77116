"""Who may change things: the console token, operator sessions and CSRF (pure).

Reading is open; replay, edit, purge and reload need the token.  A script
sends it as ``Authorization: Bearer TOKEN``.  A person signs in once with the
token and a name; the session cookie holds the name and an HMAC of it keyed by
the token (so it is void when the token changes), and every form carries a
CSRF value derived from the cookie, which another site can neither read nor
compute.  A request whose ``Origin`` is another host is refused outright.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["COOKIE", "CSRF_FIELD", "CSRF_HEADER", "Allowed", "Credentials", "Refused",
           "same_origin"]

COOKIE = "mcp_console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
OPERATOR_HEADER = "x-mcp-operator"
MAX_NAME = 64


@dataclass(frozen=True, slots=True)
class Allowed:
    """The request may change things; ``who`` goes into the audit log."""

    who: str


@dataclass(frozen=True, slots=True)
class Refused:
    """401 (no credential) or 403 (a wrong one, a failed CSRF check, writes disabled)."""

    status: int
    why: str


def _mac(token: str, purpose: str, value: str) -> str:
    digest = hmac.new(token.encode(), f"{purpose}\0{value}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def _name(text: str) -> str:
    """An operator name kept printable and short (it is shown and logged)."""
    kept = "".join(c for c in text.strip() if c.isprintable())[:MAX_NAME]
    return kept or "operator"


@dataclass(frozen=True)
class Credentials:
    """The console token (``None``: every change is refused)."""

    token: str | None

    def __repr__(self) -> str:  # never show the token
        return f"Credentials(token={'set' if self.token else None})"

    @property
    def writable(self) -> bool:
        return bool(self.token)

    def sign_in(self, token: str, name: str) -> str | None:
        """The session cookie's value for ``name``, or None when ``token`` is wrong."""
        if not self.token or not hmac.compare_digest(token.encode(), self.token.encode()):
            return None
        who = _name(name)
        encoded = base64.urlsafe_b64encode(who.encode()).decode().rstrip("=")
        return f"{encoded}.{_mac(self.token, 'session', who)}"

    def operator(self, cookie: str | None) -> str | None:
        """The signed-in operator of a session cookie, or None."""
        if not self.token or not cookie or "." not in cookie:
            return None
        encoded, _, mac = cookie.rpartition(".")
        try:
            who = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return who if hmac.compare_digest(mac, _mac(self.token, "session", who)) else None

    def csrf(self, cookie: str | None) -> str:
        """The CSRF value forms of this session carry ('' without a session)."""
        if self.operator(cookie) is None or not self.token or not cookie:
            return ""
        return _mac(self.token, "csrf", cookie)

    def check(self, headers: Mapping[str, str], cookie: str | None, form_csrf: str | None,
              client: str) -> Allowed | Refused:
        """May this request change things?  ``headers`` are lower-cased names."""
        if not same_origin(headers):
            return Refused(403, "cross-origin request refused")
        if not self.token:
            return Refused(403, "changes are disabled: no console token is configured "
                                "(set MCP_CONSOLE_TOKEN or MCP_CONSOLE_TOKEN_FILE)")
        auth = headers.get("authorization", "")
        if auth:
            scheme, _, given = auth.strip().partition(" ")
            if scheme.lower() != "bearer" or not given.strip():
                return Refused(401, "send Authorization: Bearer <console token>")
            if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                return Refused(403, "wrong token")
            return Allowed(f"{_name(headers.get(OPERATOR_HEADER, 'token'))}@{client}")
        who = self.operator(cookie)
        if who is None:
            return Refused(401, "sign in with the console token first")
        sent = form_csrf or headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), self.csrf(cookie).encode()):
            return Refused(403, "CSRF check failed: reload the page and try again")
        return Allowed(f"{who}@{client}")


def same_origin(headers: Mapping[str, str]) -> bool:
    """No ``Origin`` (curl, old browsers), or one naming the host the request went to."""
    origin = headers.get("origin")
    if origin is None:
        return True
    return origin != "null" and urlsplit(origin).netloc == headers.get("host", "")
