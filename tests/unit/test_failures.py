"""The one exception table of the broker shell (``router.broker.failures``)."""

from __future__ import annotations

import inspect
from types import ModuleType

import aio_pika.exceptions
import aiormq.exceptions
import pamqp.exceptions
import pytest

from router.broker.failures import TABLE, failure_of, publish_failure, publishing, translated
from router.errors import (
    BrokerFailure,
    BrokerRefused,
    ChannelGone,
    DeliveryFailed,
    NoAnswer,
    NotFound,
    RouterError,
    TransientFailure,
    Unroutable,
    Unsendable,
)

# Asking again the same way gets the same answer: these are permanent; the rest transient.
PERMANENT = {
    "PublishError", "ChannelNotFoundEntity", "ChannelAccessRefused", "ChannelLockedResource",
    "ChannelPreconditionFailed", "DuplicateConsumerTag", "ConnectionNotAllowed",
    "ConnectionCommandInvalid", "ConnectionSyntaxError", "ConnectionNotImplemented",
    "MethodNotImplemented", "MessageProcessError", "AMQPNotFound", "AMQPNoRoute",
    "AMQPContentTooLarge", "AMQPAccessRefused", "AMQPPreconditionFailed", "AMQPResourceLocked",
    "AMQPNotAllowed", "AMQPInvalidPath", "AMQPCommandInvalid", "AMQPSyntaxError",
    "AMQPNotImplemented",
}


def _exceptions(*modules: ModuleType) -> list[type[BaseException]]:
    found = {cls for module in modules for _, cls in inspect.getmembers(module, inspect.isclass)
             if issubclass(cls, BaseException) and cls.__module__.split(".")[0]
             in {"aiormq", "aio_pika", "pamqp"}}
    return sorted(found, key=lambda cls: (cls.__module__, cls.__name__))


FOREIGN = _exceptions(aiormq.exceptions, aio_pika.exceptions, pamqp.exceptions)


def _instance(cls: type[BaseException]) -> BaseException:
    try:
        return cls(406, "PRECONDITION_FAILED - inequivalent arg 'durable'")
    except (TypeError, AttributeError):  # PublishError wants the returned message itself
        return cls.__new__(cls)


def test_the_walk_finds_the_three_libraries_exceptions() -> None:
    """The walk sees aiormq's, aio-pika's own and pamqp's classes (so the next test means it)."""
    modules = {cls.__module__ for cls in FOREIGN}

    assert modules == {"aiormq.exceptions", "aio_pika.exceptions", "pamqp.exceptions"}
    assert len(FOREIGN) > 50


@pytest.mark.parametrize("cls", FOREIGN, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_client_exception_has_a_row_of_its_own(cls: type[BaseException]) -> None:
    """Each class is named in the table: a class a library upgrade adds fails here."""
    assert cls in {kind for kind, _ in TABLE}


@pytest.mark.parametrize("cls", FOREIGN, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_client_exception_means_a_router_error_on_its_side(
        cls: type[BaseException]) -> None:
    """Each class maps onto ``router.errors``, transient or permanent as the broker meant."""
    failure = failure_of(_instance(cls))

    assert isinstance(failure, RouterError)
    assert failure.transient is (cls.__name__ not in PERMANENT)


@pytest.mark.parametrize(("exc", "kind"), [
    (TimeoutError(), NoAnswer), (ConnectionResetError(), ChannelGone),
    (OSError("unreachable"), ChannelGone), (BrokenPipeError(), ChannelGone)])
def test_socket_errors_are_transient(exc: BaseException, kind: type[RouterError]) -> None:
    """The socket underneath: a timeout is NoAnswer, anything else a gone channel."""
    failure = failure_of(exc)

    assert isinstance(failure, kind)
    assert failure.transient


def test_a_bug_of_ours_is_not_translated() -> None:
    """``translated()`` leaves an exception that is not the client library's as it is."""
    with pytest.raises(KeyError), translated():
        raise KeyError("ours")


def test_translated_raises_the_meaning_from_the_client_exception() -> None:
    """The client's exception becomes the cause, so nothing of it is lost."""
    original = aiormq.exceptions.ChannelNotFoundEntity("NOT_FOUND - no queue 'q'")
    with pytest.raises(NotFound) as caught, translated():
        raise original

    assert caught.value.__cause__ is original
    assert isinstance(caught.value, BrokerRefused)
    assert "no queue 'q'" in str(caught.value)


def test_a_router_error_passes_through_unchanged() -> None:
    """What is already ours is not wrapped again."""
    mine = ChannelGone("gone")
    with pytest.raises(ChannelGone) as caught, translated():
        raise mine

    assert caught.value is mine


@pytest.mark.parametrize(("exc", "kind"), [
    (aiormq.exceptions.ChannelNotFoundEntity("NOT_FOUND - no exchange 'x'"), Unroutable),
    (aiormq.exceptions.DeliveryError(None, None), TransientFailure),
    (aiormq.exceptions.ChannelPreconditionFailed("PRECONDITION_FAILED"), TransientFailure),
    (TimeoutError(), TransientFailure),
    (aiormq.exceptions.ConnectionClosed(320, "CONNECTION_FORCED"), TransientFailure),
    (pamqp.exceptions.AMQPContentTooLarge(), Unsendable),
    (RuntimeError("a bug"), TransientFailure)])
def test_a_publish_failure_is_always_a_delivery_failure(exc: BaseException,
                                                        kind: type[DeliveryFailed]) -> None:
    """One copy's fate: a missing exchange is Unroutable, a lost channel worth a retry."""
    assert isinstance(publish_failure(exc), kind)
    with pytest.raises(kind), publishing():
        raise exc


def test_timeouts_say_what_was_waited_for() -> None:
    """A publish that timed out names the confirm it waited for."""
    assert "publisher confirm" in str(publish_failure(TimeoutError()))
    assert isinstance(failure_of(TimeoutError()), BrokerFailure)
