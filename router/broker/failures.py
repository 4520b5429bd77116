"""The one table from aio-pika, aiormq and pamqp exceptions to ``router.errors``.

Every call into the client library that can fail goes through ``translated()``
(or ``publishing()`` for one outgoing copy), as httpx maps httpcore's
exceptions at one choke point: what leaves ``router.broker`` is a
``RouterError`` raised ``from`` the client's exception, never the client's own.
The meanings, drawn as a tree in ``router.errors``:

* ``ChannelGone`` (transient): the channel or connection closed for a reason of
  the broker's or the network's (320, 504, 505, 506, 541, a socket error);
* ``NoAnswer`` (transient): a timeout;
* ``BrokerUnavailable`` (transient): the handshake failed (authentication,
  protocol);
* ``BrokerRefused`` (permanent): the broker refused the request itself (403,
  405, 406, 402, 502, 503, 530, 540); ``NotFound`` for 404;
* for a publish: ``Unroutable`` (basic.return, 312), ``Refused`` (basic.nack),
  ``Unsendable`` (pamqp cannot encode it, 311).

``tests/unit/test_failures.py`` walks the three libraries' exception modules
and proves every class has a row, on the side (transient or permanent) it
belongs to.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika.exceptions as pika
import aiormq.exceptions as rmq
import pamqp.exceptions as pamqp

from router.errors import (
    BrokerRefused,
    BrokerUnavailable,
    ChannelGone,
    DeliveryFailed,
    NoAnswer,
    NotFound,
    Refused,
    RouterError,
    TransientFailure,
    Unroutable,
    Unsendable,
)

__all__ = ["TABLE", "broker_text", "failure_of", "publish_failure", "publishing", "reply_text",
           "translated"]

Meaning = Callable[[BaseException], RouterError]


def _returned(exc: BaseException) -> RouterError:
    frame: Any = getattr(exc, "frame", None)
    code = getattr(frame, "reply_code", "?")
    text = getattr(frame, "reply_text", "returned")
    where = f"exchange {getattr(frame, 'exchange', '?')!r}, " \
            f"routing key {getattr(frame, 'routing_key', '?')!r}"
    return Unroutable(f"returned by the broker: {code} {text} ({where})")


def _nacked(_exc: BaseException) -> RouterError:
    return Refused("negatively confirmed (basic.nack) by the broker: a queue it "
                   "reaches refused it (full with reject-publish, or unavailable)")


def _as(kind: type[RouterError]) -> Meaning:
    """The meaning ``kind``, saying what the broker answered."""
    def meaning(exc: BaseException) -> RouterError:
        return kind(reply_text(exc))
    return meaning


_GONE, _REFUSED, _NOT_FOUND = _as(ChannelGone), _as(BrokerRefused), _as(NotFound)

# Most specific first: the first row whose class the exception is an instance of
# gives its meaning.  PublishError subclasses DeliveryError: it comes first (STYLE.md).
TABLE: tuple[tuple[type[BaseException], Meaning], ...] = (
    (rmq.PublishError, _returned),
    (rmq.DeliveryError, _nacked),
    (rmq.ChannelNotFoundEntity, _NOT_FOUND),
    (rmq.ChannelAccessRefused, _REFUSED),
    (rmq.ChannelLockedResource, _REFUSED),
    (rmq.ChannelPreconditionFailed, _REFUSED),
    (rmq.DuplicateConsumerTag, _REFUSED),
    (rmq.ChannelClosed, _GONE),
    (rmq.AMQPChannelError, _GONE),
    (rmq.AuthenticationError, _as(BrokerUnavailable)),
    (rmq.ProbableAuthenticationError, _as(BrokerUnavailable)),
    (rmq.IncompatibleProtocolError, _as(BrokerUnavailable)),
    (rmq.ConnectionNotAllowed, _REFUSED),
    (rmq.ConnectionCommandInvalid, _REFUSED),
    (rmq.ConnectionSyntaxError, _REFUSED),
    (rmq.ConnectionNotImplemented, _REFUSED),
    (rmq.ConnectionChannelError, _GONE),
    (rmq.ConnectionFrameError, _GONE),
    (rmq.ConnectionInternalError, _GONE),
    (rmq.ConnectionResourceError, _GONE),
    (rmq.ConnectionUnexpectedFrame, _GONE),
    (rmq.ConnectionClosed, _GONE),
    (rmq.AMQPConnectionError, _GONE),
    (rmq.InvalidFrameError, _GONE),  # a frame that does not decode ends the connection
    (rmq.ProtocolSyntaxError, _GONE),
    (rmq.MethodNotImplemented, _REFUSED),
    (rmq.ChannelInvalidStateError, _GONE),  # used after it closed
    (pika.MessageProcessError, _REFUSED),  # settled twice: asking again gets the same answer
    (pika.QueueEmpty, _as(NoAnswer)),
    (rmq.AMQPError, _GONE),
    (rmq.AMQPException, _GONE),
    # pamqp's classes, one per AMQP reply code (AMQP 0-9-1 spec, section 1.2 "Constants").
    (pamqp.AMQPNotFound, _NOT_FOUND),
    (pamqp.AMQPNoRoute, lambda exc: Unroutable(f"returned by the broker: {reply_text(exc)}")),
    (pamqp.AMQPContentTooLarge, _as(Unsendable)),
    (pamqp.AMQPNoConsumers, _as(Refused)),
    (pamqp.AMQPAccessRefused, _REFUSED),
    (pamqp.AMQPPreconditionFailed, _REFUSED),
    (pamqp.AMQPResourceLocked, _REFUSED),
    (pamqp.AMQPNotAllowed, _REFUSED),
    (pamqp.AMQPInvalidPath, _REFUSED),
    (pamqp.AMQPCommandInvalid, _REFUSED),
    (pamqp.AMQPSyntaxError, _REFUSED),
    (pamqp.AMQPNotImplemented, _REFUSED),
    (pamqp.AMQPConnectionForced, _GONE),
    (pamqp.AMQPChannelError, _GONE),
    (pamqp.AMQPFrameError, _GONE),
    (pamqp.AMQPInternalError, _GONE),
    (pamqp.AMQPResourceError, _GONE),
    (pamqp.AMQPUnexpectedFrame, _GONE),
    (pamqp.AMQPSoftError, _GONE),
    (pamqp.AMQPHardError, _GONE),
    (pamqp.UnmarshalingException, _GONE),  # an incoming frame that does not decode
    (pamqp.AMQPError, _GONE),
    (pamqp.PAMQPException, _GONE),
    # The socket underneath.  TimeoutError subclasses OSError: it comes first.
    (TimeoutError, lambda _exc: NoAnswer("the broker did not answer in time")),
    (ConnectionError, _GONE),
    (OSError, _GONE),
)


def failure_of(exc: BaseException) -> RouterError | None:
    """The ``router.errors`` meaning of a client-library exception; None for anything
    else (a bug of ours stays what it is).  A ``RouterError`` means itself."""
    if isinstance(exc, RouterError):
        return exc
    for kind, meaning in TABLE:
        if isinstance(exc, kind):
            return meaning(exc)
    if _from_pamqp(exc):  # its encoders raise TypeError, ValueError, OverflowError, ...
        return Unsendable(f"cannot be encoded: {type(exc).__name__}: {str(exc)[:200]}")
    return None


def publish_failure(exc: BaseException) -> DeliveryFailed:
    """What happened to one outgoing copy, for an exception its publish raised."""
    failure = failure_of(exc)
    match failure:
        case DeliveryFailed():
            return failure
        case NotFound():
            return Unroutable(f"destination does not exist: {failure}")
        case NoAnswer():
            return TransientFailure("no publisher confirm before the timeout")
        case RouterError():
            return TransientFailure(f"connection or channel lost: {failure}")
        case None:
            return TransientFailure(f"{type(exc).__name__}: {exc}")
    raise AssertionError(f"unreachable: {failure!r}")  # pragma: no cover


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise client-library exceptions of the block as their ``router.errors`` meaning."""
    try:
        yield
    except Exception as exc:
        failure = failure_of(exc)
        if failure is None or failure is exc:
            raise
        raise failure from exc


@contextlib.contextmanager
def publishing() -> Iterator[None]:
    """Raise every failure of the block (publishing one copy) as ``DeliveryFailed``."""
    try:
        yield
    except DeliveryFailed:
        raise
    except Exception as exc:
        raise publish_failure(exc) from exc


def reply_text(exc: BaseException) -> str:
    """What the broker said (``404 NOT_FOUND - no queue 'x'``), or the exception's name."""
    args = [a for a in exc.args if a]
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{args[0]} {args[1]}"
    return str(args[0]) if args else type(exc).__name__


def broker_text(failure: BaseException) -> str:
    """The broker's reply text behind ``failure``, without the code
    (``PRECONDITION_FAILED - inequivalent arg ...``), for messages naming an entity."""
    cause = failure.__cause__ if failure.__cause__ is not None else failure
    args = [a for a in cause.args if a]
    return str(args[-1]) if args else str(failure)


def _from_pamqp(exc: BaseException) -> bool:
    """True when ``exc`` was raised inside pamqp (encoding a frame), not by a bug of ours."""
    if not isinstance(exc, TypeError | ValueError | OverflowError | struct.error
                      | RecursionError):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "pamqp" in Path(tb.tb_frame.f_code.co_filename).parts
