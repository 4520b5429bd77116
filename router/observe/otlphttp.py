"""OTLP/HTTP for the exporter process: encoded requests POSTed with ``requests``.

What the SDK's ``OTLPSpanExporter`` (http/protobuf) does with a request it has
encoded, with public APIs only: ``Content-Type: application/x-protobuf``, the
configured headers, the body compressed (gzip or deflate, named in
``Content-Encoding``), TLS verified against the configured CA bundle (the
system's otherwise) with an optional client certificate, no redirects
followed, and ``otlpsending.deliver``'s retries.  408, 429, 502, 503 and 504
and connection errors (timeouts included) are transient; ``Retry-After``, in
seconds or as a date, sets the wait.  A connection error is tried again at once,
before any backoff, as the SDK does: a pooled keep-alive connection the receiver
closed fails that way.  Any other status, or a 3xx (nothing was delivered), is
refused.
"""

from __future__ import annotations

import gzip
import math
import time
import zlib
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import requests

from router.observe.otlpsending import Attempt, Refused, Retry, SendOptions, Sent, deliver

__all__ = ["RETRYABLE", "HttpSender", "retry_after"]

RETRYABLE = frozenset({408, 429, 502, 503, 504})


def retry_after(value: str | None, now: float) -> float | None:
    """The seconds a ``Retry-After`` header asks to wait (RFC 9110), None if it says none."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _compressor(compression: str) -> Callable[[bytes], bytes]:
    if compression == "gzip":
        return lambda body: gzip.compress(body, mtime=0)
    if compression == "deflate":
        return zlib.compress
    return lambda body: body


class HttpSender:
    """POSTs encoded requests to one OTLP/HTTP traces endpoint."""

    def __init__(self, endpoint: str, options: SendOptions, user_agent: str,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._endpoint, self._timeout, self._sleep = endpoint, options.timeout, sleep
        self._options = options
        self._compress = _compressor(options.compression)
        session = requests.Session()
        session.headers.update({"Content-Type": "application/x-protobuf",
                                "User-Agent": user_agent})
        if options.compression != "none":
            session.headers["Content-Encoding"] = options.compression
        session.headers.update(dict(options.headers))
        self._session = session
        # Per request, not on the session: requests lets REQUESTS_CA_BUNDLE override a
        # session's CA bundle (psf/requests#3829); a configured one must be the one used.
        self._verify: bool | str = options.certificate or True
        chain, key = options.client_certificate, options.client_key
        self._cert = (chain, key) if chain and key else chain

    def send(self, payload: bytes) -> bool:
        body = self._compress(payload)
        return deliver(lambda seconds: self._attempt(body, seconds), self._timeout,
                       self._endpoint, self._sleep)

    def _post(self, body: bytes, seconds: float) -> requests.Response:
        return self._session.post(self._endpoint, data=body, timeout=seconds,
                                  verify=self._verify, cert=self._cert, allow_redirects=False)

    def _attempt(self, body: bytes, seconds: float) -> Attempt:
        started = time.monotonic()
        try:
            try:
                response = self._post(body, seconds)
            except requests.ConnectionError:  # a stale pooled connection: once more, at once
                response = self._post(body, max(seconds - (time.monotonic() - started), 0.001))
        except (requests.ConnectionError, requests.Timeout) as exc:
            return Retry(f"{type(exc).__name__}: {exc}")
        except (requests.RequestException, OSError) as exc:  # a bad URL, an unreadable CA file
            return Refused(self._unreadable() or f"{type(exc).__name__}: {exc}")
        status = f"HTTP {response.status_code} {response.reason}"
        if 200 <= response.status_code < 300:
            return Sent()
        if response.status_code in RETRYABLE:
            return Retry(status, retry_after(response.headers.get("Retry-After"), time.time()))
        return Refused(status)

    def _unreadable(self) -> str | None:
        """Which TLS file, named by which variable, cannot be read (``requests`` reads them
        for every request, so one that went since the start fails each one)."""
        try:
            self._options.check_files()
        except ValueError as exc:
            return str(exc)
        return None

    def close(self) -> None:
        self._session.close()
