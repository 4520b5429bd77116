"""Connections to the broker, and the client library's types under the names the rest uses.

* ``connect`` opens a connection with a deliberate heartbeat and name, to the
  first node of a cluster that answers (``broker_urls``: several ``--amqp-url``
  or one comma-separated ``MCP_AMQP_URL``);
* ``Connection``, ``Channel``, ``Exchange``, ``Delivered``: aio-pika's and
  aiormq's types, so code outside ``router.broker`` can name them without
  importing the client library;
* ``envelope_of`` / ``wire_properties`` (``router.broker.converter``,
  ``router.broker.encodable``) convert deliveries to the core's ``Envelope``
  and back; ``translate`` (``router.broker.failures``) maps a client exception
  onto ``router.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TypeAlias

import aio_pika
import aiormq
import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from router.broker import wire
from router.broker.converter import envelope_of
from router.broker.encodable import wire_properties
from router.broker.failures import failure_of, publish_failure, translated
from router.errors import BrokerFailure, BrokerUnavailable

__all__ = ["DEFAULT_URL", "HEARTBEAT", "Channel", "Connection", "Delivered", "Exchange",
           "Wrapper", "broker_address", "broker_cause", "broker_urls", "broker_user",
           "close_quietly", "connect", "connect_first", "envelope_of", "redact", "translate",
           "wire_properties"]

Connection: TypeAlias = AbstractConnection
Wrapper: TypeAlias = AbstractChannel  # aio-pika's channel (declares, closes)
Channel: TypeAlias = aiormq.abc.AbstractChannel  # the AMQP channel underneath (basic.*)
Exchange: TypeAlias = AbstractExchange
Delivered: TypeAlias = aiormq.abc.DeliveredMessage

translate = publish_failure  # the name publish paths have used: one copy's DeliveryFailed

DEFAULT_URL = "amqp://guest:guest@localhost:5672/"
# aio-pika notices a silently dropped peer after about three heartbeats (STYLE.md):
# 5 s gives detection in ~15 s without measurable traffic.
HEARTBEAT = 5
CONNECT_TIMEOUT = 15.0
CLOSE_TIMEOUT = 5.0  # a peer that went away silently may never answer connection.close


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
    except Exception as exc:
        if failure_of(exc) is None:
            raise  # a bug of ours, not an answer of the broker's
        with contextlib.suppress(Exception):
            await connection.close()
        why = f"no answer within {CONNECT_TIMEOUT:g}s" if isinstance(exc, TimeoutError) \
            else str(exc) or type(exc).__name__
        raise _NoAnswer(f"cannot connect to {redact(url)}: {why}") from exc


_SESSION_ENDERS = (BrokerUnavailable, BrokerFailure, ConnectionError, TimeoutError,
                   aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError)


def broker_cause(exc: BaseException) -> BaseException | None:
    """The broker error that ended a session (the first, inside the exception groups a
    TaskGroup raises), or None when something else did."""
    if isinstance(exc, BaseExceptionGroup):
        causes = [broker_cause(e) for e in exc.exceptions]
        return causes[0] if causes and all(c is not None for c in causes) else None
    return exc if isinstance(exc, _SESSION_ENDERS) else None


async def close_quietly(closable: Connection | Wrapper) -> None:
    """Close a connection or channel, bounded in time; one that is closed already, or whose
    broker is gone, is left as it is (the broker returns what it had not acked)."""
    if closable.is_closed:
        return
    with contextlib.suppress(BrokerFailure, BrokerUnavailable), translated():
        await asyncio.wait_for(closable.close(), CLOSE_TIMEOUT)
