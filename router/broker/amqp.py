"""The one place that knows aio-pika's and aiormq's types.

* ``connect`` opens a connection with a deliberate heartbeat and name, to the
  first node of a cluster that answers (``broker_urls``: several ``--amqp-url``
  or one comma-separated ``MCP_AMQP_URL``);
* ``envelope_of`` / ``wire_properties`` convert deliveries to the core's
  ``Envelope`` and back;
* ``translate`` maps every client exception onto ``router.errors``
  (``raise translate(exc) from exc``).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import aiormq.abc
from aio_pika.abc import AbstractConnection

from router.broker import wire
from router.broker.encodable import fit_raw, screen, wire_properties
from router.core.envelope import Envelope, Properties, text_value
from router.errors import (
    BrokerUnavailable,
    Refused,
    RouterError,
    TransientFailure,
    Unroutable,
    Unsendable,
)

__all__ = ["DEFAULT_URL", "HEARTBEAT", "broker_address", "broker_cause", "broker_urls",
           "broker_user", "connect", "connect_first", "envelope_of", "redact", "translate",
           "wire_properties"]

DEFAULT_URL = "amqp://guest:guest@localhost:5672/"
# aio-pika notices a silently dropped peer after about three heartbeats (STYLE.md):
# 5 s gives detection in ~15 s without measurable traffic.
HEARTBEAT = 5
CONNECT_TIMEOUT = 15.0


def broker_urls(value: str | Sequence[str]) -> tuple[str, ...]:
    """Every broker address given: URLs, each of which may be a comma-separated list
    (``MCP_AMQP_URL=amqp://a:5672/,amqp://b:5672/``); the local guest when none."""
    items = [value] if isinstance(value, str) else list(value)
    urls = tuple(url.strip() for item in items for url in item.split(",") if url.strip())
    return urls or (DEFAULT_URL,)


def redact(url: str | Sequence[str]) -> str:
    """The URL (or URLs, comma-separated) without passwords, for logs and error messages."""
    urls = broker_urls(url)
    if len(urls) > 1:
        return ",".join(redact(one) for one in urls)
    url = urls[0]
    try:
        parsed = aio_pika.connection.make_url(url)
    except Exception:  # noqa: BLE001 -- a malformed URL is shown as "<url>"
        return "<url>"
    return str(parsed.with_password("***")) if parsed.password else str(parsed)


def broker_user(url: str | Sequence[str]) -> str:
    """The user a connection to ``url`` (its first node) authenticates as (default: guest)."""
    try:
        return aio_pika.connection.make_url(broker_urls(url)[0]).user or "guest"
    except Exception:  # noqa: BLE001 -- connect() reports a malformed URL properly
        return "guest"


def broker_address(url: str | Sequence[str]) -> tuple[str, int] | None:
    """Host and port of the broker at ``url`` (its first node)."""
    try:
        parsed = aio_pika.connection.make_url(broker_urls(url)[0])
    except Exception:  # noqa: BLE001 -- connect() reports a malformed URL properly
        return None
    return (parsed.host or "localhost", parsed.port or 5672)


async def connect(url: str | Sequence[str], name: str, *,
                  heartbeat: int = HEARTBEAT) -> AbstractConnection:
    """A plain (non-robust) connection to the first node that answers: recovery is the
    service's job, done whole.

    Bounded in time: a broker that is still starting accepts TCP connections
    long before it answers the AMQP handshake.  Content headers on it are
    decoded by ``router.broker.wire``: no delivery can end the connection.
    """
    urls = broker_urls(url)
    connection, _ = await connect_first(urls, name, range(len(urls)), heartbeat=heartbeat)
    return connection


async def connect_first(urls: Sequence[str], name: str, order: Sequence[int], *,
                        heartbeat: int = HEARTBEAT) -> tuple[AbstractConnection, int]:
    """A connection to the first of ``urls`` (tried in ``order``) that answers, and its index;
    ``BrokerUnavailable`` naming every node's failure when none does."""
    failures: list[str] = []
    for index in order:
        try:
            return await _connect_one(urls[index], name, heartbeat), index
        except _NoAnswer as exc:
            failures.append(str(exc))
    raise BrokerUnavailable("; ".join(failures) + " (is RabbitMQ running there? --amqp-url or "
                            "MCP_AMQP_URL names the broker)" if failures
                            else "no broker address given")


class _NoAnswer(Exception):
    """One node did not answer (``connect_first`` tries the next)."""


async def _connect_one(url: str, name: str, heartbeat: int) -> AbstractConnection:
    wire.install()  # before the first frame: no delivery can end this connection
    # aio_pika.connect() as written there, but a connection that failed is closed here:
    # left to its __del__, it schedules close() on a loop that may be gone
    # ("coroutine 'Connection.close' was never awaited" at exit).
    connection = aio_pika.Connection(aio_pika.connection.make_url(url, heartbeat=heartbeat),
                                     client_properties={"connection_name": name})
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await connection.connect()
            return connection
    except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
        with contextlib.suppress(Exception):
            await connection.close()
        why = f"no answer within {CONNECT_TIMEOUT:g}s" if isinstance(exc, TimeoutError) \
            else str(exc) or type(exc).__name__
        raise _NoAnswer(f"cannot connect to {redact(url)}: {why}") from exc



_SESSION_ENDERS = (BrokerUnavailable, ConnectionError, TimeoutError,
                   aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError)


def broker_cause(exc: BaseException) -> BaseException | None:
    """The broker error that ended a session (the first, inside the exception groups a
    TaskGroup raises), or None when something else did."""
    if isinstance(exc, BaseExceptionGroup):
        causes = [broker_cause(e) for e in exc.exceptions]
        return causes[0] if causes and all(c is not None for c in causes) else None
    return exc if isinstance(exc, _SESSION_ENDERS) else None


def envelope_of(message: aiormq.abc.DeliveredMessage) -> Envelope:
    """The core's view of a delivery; a missing ``message_id`` gets a UUID here.

    A delivery whose properties did not decode (``router.broker.wire``) or cannot be
    sent on (``router.broker.encodable``) carries its sendable part, the ``defects``
    and, when the header table did not decode, its raw bytes.
    """
    p = message.header.properties
    defects: list[str] = []
    raw_headers = None
    if isinstance(p, wire.Undecoded):
        defects, raw_headers = list(p.problems), p.raw_headers
    properties = Properties(
        content_type=text_value(p.content_type),
        content_encoding=text_value(p.content_encoding),
        headers=p.headers if isinstance(p.headers, dict) else {},
        delivery_mode=p.delivery_mode,
        priority=p.priority,
        correlation_id=text_value(p.correlation_id),
        reply_to=text_value(p.reply_to),
        expiration=text_value(p.expiration),
        message_id=text_value(p.message_id) or str(uuid.uuid4()),
        timestamp=p.timestamp,
        type=text_value(p.message_type),
        user_id=text_value(p.user_id),
        app_id=text_value(p.app_id),
    )
    properties, unsendable = screen(properties)
    properties, raw_headers, too_large = fit_raw(properties, raw_headers)
    delivery = message.delivery
    defects += getattr(delivery, "wire_problems", None) or []  # router.broker.wire.unmarshal_method
    return Envelope(
        body=message.body,
        properties=properties,
        exchange=getattr(delivery, "exchange", "") or "",
        routing_key=getattr(delivery, "routing_key", "") or "",
        redelivered=bool(getattr(delivery, "redelivered", False)),
        defects=(*defects, *unsendable, *too_large),
        raw_headers=raw_headers,
    )


def translate(exc: BaseException) -> RouterError:
    """The ``router.errors`` meaning of a client-library exception."""
    # PublishError subclasses DeliveryError: test it first (STYLE.md).
    if isinstance(exc, aiormq.exceptions.PublishError):
        frame: Any = exc.frame
        code = getattr(frame, "reply_code", "?")
        text = getattr(frame, "reply_text", "returned")
        where = f"exchange {getattr(frame, 'exchange', '?')!r}, " \
                f"routing key {getattr(frame, 'routing_key', '?')!r}"
        return Unroutable(f"returned by the broker: {code} {text} ({where})")
    if isinstance(exc, aiormq.exceptions.ChannelNotFoundEntity):
        return Unroutable(f"destination does not exist: {_reply(exc)}")
    if isinstance(exc, aiormq.exceptions.DeliveryError):
        return Refused("negatively confirmed (basic.nack) by the broker: a queue it "
                       "reaches refused it (full with reject-publish, or unavailable)")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return TransientFailure("no publisher confirm before the timeout")
    if isinstance(exc, aiormq.exceptions.AMQPError | aiormq.exceptions.ChannelInvalidStateError
                  | ConnectionError | OSError):
        return TransientFailure(f"connection or channel lost: {_reply(exc)}")
    if isinstance(exc, RouterError):
        return exc
    if _from_pamqp(exc):  # its encoders raise TypeError, ValueError, OverflowError, ...
        return Unsendable(f"cannot be encoded: {type(exc).__name__}: {str(exc)[:200]}")
    return TransientFailure(f"{type(exc).__name__}: {exc}")


def _from_pamqp(exc: BaseException) -> bool:
    """True when ``exc`` was raised inside pamqp (encoding a frame), not by a bug of ours."""
    if not isinstance(exc, TypeError | ValueError | OverflowError | struct.error
                      | RecursionError):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "pamqp" in Path(tb.tb_frame.f_code.co_filename).parts


def _reply(exc: BaseException) -> str:
    args = [a for a in exc.args if a]
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{args[0]} {args[1]}"
    return str(args[0]) if args else type(exc).__name__
