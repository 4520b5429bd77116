"""What the OTLP senders of the exporter process share: their options and their retries.

``SendOptions`` is what the OpenTelemetry SDK's OTLP span exporters read from
``OTEL_EXPORTER_OTLP_TRACES_*``, each falling back to the ``OTEL_EXPORTER_OTLP_*``
of every signal: headers, timeout, compression and the TLS files.  The router's
entry point resolves and checks them (``TelemetrySettings.from_env``: a header
the protocol cannot send or a TLS file that cannot be read stops the start, by
the variable's name) and sends them to the exporter process in its settings
frame, with the variables that named the TLS files, so that the exporter
process, which reads them when it starts, names the variable too when one has
gone since (``check_files``).

``deliver`` is the SDK exporters' retry loop, written once for both senders
(``router.observe.otlphttp``, ``router.observe.otlpgrpc``): up to six attempts,
waiting ``2**n`` seconds with ±20 % jitter between them (or what the receiver
asked for: ``Retry-After``, gRPC ``RetryInfo``), never past the timeout, which
bounds the whole export; a failure that is not transient ends it at once, with
an error logged.  The sleep and the clock are arguments, so tests never wait.
"""

from __future__ import annotations

import logging
import os
import random
import re
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from opentelemetry.util.re import parse_env_headers

__all__ = ["COMPRESSIONS", "MAX_ATTEMPTS", "TLS_FILES", "Refused", "Retry", "SendOptions",
           "Sender", "Sent", "backoff", "deliver", "parse_headers"]

log = logging.getLogger("router.spanexport")

COMPRESSIONS = ("none", "gzip", "deflate")
MAX_ATTEMPTS = 6  # the SDK's _MAX_RETRIES
JITTER = 0.2
DEFAULT_TIMEOUT = 10.0  # seconds, as the Python SDK reads OTEL_EXPORTER_OTLP_TIMEOUT
# The SendOptions fields naming PEM files, and the variable (after the prefix) of each.
TLS_FILES = {"certificate": "CERTIFICATE", "client_key": "CLIENT_KEY",
             "client_certificate": "CLIENT_CERTIFICATE"}
# What each protocol can send (RFC 9110 tokens; gRPC's metadata keys); values: visible ASCII
# and spaces (a line break would split the header; http.client cannot encode a euro sign).
HEADER_NAMES = {"http/protobuf": re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+"),
                "grpc": re.compile(r"[0-9a-z_.-]+")}
HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


def parse_headers(value: str) -> tuple[tuple[str, str], ...]:
    """``key=value,...`` as the SDK reads it: percent-decoded, keys in lower case."""
    return tuple(parse_env_headers(value, liberal=True).items())


def _traces(env: Mapping[str, str], name: str) -> tuple[str, str | None]:
    """The variable that applies to traces, and its value: the signal's own if set."""
    for variable in (f"OTEL_EXPORTER_OTLP_TRACES_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        if value := env.get(variable, "").strip():
            return variable, value
    return f"OTEL_EXPORTER_OTLP_{name}", None


def _unreadable(path: str) -> str | None:
    """Why the file at ``path`` cannot be read, or None when it can."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the open below
            return "not a regular file"
        with open(path, "rb"):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def _check_headers(variable: str, headers: tuple[tuple[str, str], ...], protocol: str) -> None:
    """``ValueError`` for a header ``protocol`` cannot send (by name: values are secrets)."""
    names = HEADER_NAMES[protocol]
    for name, value in headers:
        if not names.fullmatch(name):
            raise ValueError(f"{variable} names a header {protocol} cannot send: {name!r}")
        if not HEADER_VALUE.fullmatch(value):
            raise ValueError(f"{variable}: the value of header {name!r} holds a line break, "
                             f"control or non-ASCII character, which {protocol} cannot send")


@dataclass(frozen=True)
class SendOptions:
    """How spans are sent, besides the endpoint and protocol."""

    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = DEFAULT_TIMEOUT  # seconds, for the whole export with its retries
    compression: str = "none"  # one of COMPRESSIONS
    certificate: str | None = None  # the CA bundle that verifies the receiver (PEM)
    client_key: str | None = None  # the client's key and certificate, for mutual TLS
    client_certificate: str | None = None
    origins: tuple[tuple[str, str], ...] = ()  # (TLS field, the variable that named its file)

    def __post_init__(self) -> None:
        """A settings frame that ``from_env`` did not make is refused here, when the exporter
        process starts, not by each batch."""
        timeout = self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"the timeout must be a positive number of seconds, got {timeout!r}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"the compression must be one of {', '.join(COMPRESSIONS)}, "
                             f"got {self.compression!r}")

    def __repr__(self) -> str:  # headers often carry API keys
        return (f"SendOptions(timeout={self.timeout}, compression={self.compression!r}, "
                f"certificate={self.certificate!r})")

    def check_files(self) -> None:
        """``ValueError`` naming the file and its variable, for a TLS file that cannot be read."""
        origins = dict(self.origins)
        for name in TLS_FILES:
            path = getattr(self, name)
            if path is not None and (why := _unreadable(path)) is not None:
                raise ValueError(f"{origins.get(name, name)} names {path!r}, which cannot be "
                                 f"read ({why})")

    @classmethod
    def from_env(cls, env: Mapping[str, str], protocol: str = "http/protobuf") -> SendOptions:
        """Read the variables for traces, sent over ``protocol``; ``ValueError`` names a bad one."""
        header_variable, headers = _traces(env, "HEADERS")
        variable, timeout = _traces(env, "TIMEOUT")
        try:
            seconds = float(timeout or DEFAULT_TIMEOUT)
        except ValueError as exc:
            raise ValueError(f"{variable} must be a number of seconds") from exc
        if not seconds > 0:
            raise ValueError(f"{variable} must be a positive number of seconds")
        variable, named = _traces(env, "COMPRESSION")
        compression = (named or "none").lower()
        if compression not in COMPRESSIONS:
            raise ValueError(f"{variable} must be one of {', '.join(COMPRESSIONS)}, "
                             f"got {named!r}")
        files = [_traces(env, suffix) for suffix in TLS_FILES.values()]
        ca, key, chain = (path for _, path in files)
        options = cls(parse_headers(headers or ""), seconds, compression, ca, key, chain,
                      tuple(zip(TLS_FILES, (variable for variable, _ in files), strict=True)))
        _check_headers(header_variable, options.headers, protocol)
        options.check_files()
        return options


class Sender(Protocol):
    """Sends one encoded ``ExportTraceServiceRequest``; True once the receiver took it."""

    def send(self, payload: bytes) -> bool: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Sent:
    """The receiver accepted the request."""


@dataclass(frozen=True)
class Retry:
    """A transient failure; ``delay``: the wait the receiver asked for, if it did."""

    reason: str
    delay: float | None = None


@dataclass(frozen=True)
class Refused:
    """A failure that trying again would not mend (a 400, a malformed URL, ...)."""

    reason: str


Attempt = Sent | Retry | Refused


def backoff(retry: int, uniform: Callable[[float, float], float] = random.uniform) -> float:
    """The wait before attempt ``retry + 2``: ``2**retry`` seconds, ±20 % jitter (the SDK's)."""
    return float(2**retry * uniform(1 - JITTER, 1 + JITTER))


def deliver(attempt: Callable[[float], Attempt], timeout: float, where: str,
            sleep: Callable[[float], None] = time.sleep,
            clock: Callable[[], float] = time.monotonic) -> bool:
    """Call ``attempt(seconds left)`` until it is ``Sent``, ``Refused`` or time is up."""
    deadline = clock() + timeout
    for retry in range(MAX_ATTEMPTS):
        outcome = attempt(max(deadline - clock(), 0.0))
        if isinstance(outcome, Sent):
            return True
        if isinstance(outcome, Refused):
            log.error("spans refused by %s, not retried: %s", where, outcome.reason)
            return False
        wait = backoff(retry) if outcome.delay is None else outcome.delay
        if retry + 1 == MAX_ATTEMPTS or wait > deadline - clock():
            log.error("spans not exported to %s, given up after %d attempt(s) within the "
                      "%.1fs timeout: %s", where, retry + 1, timeout, outcome.reason)
            return False
        log.warning("spans not exported to %s (%s), trying again in %.2fs",
                    where, outcome.reason, wait)
        sleep(wait)
    return False  # not reached: the last attempt returns above
