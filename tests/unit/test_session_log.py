"""How the router logs a session that ended: one line, tracebacks only at debug level."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from router.config.configuration import load_config
from router.runtime.service import RouterService, Settings

ROOT = Path(__file__).resolve().parents[2]


async def _one_session(caplog: pytest.LogCaptureFixture, error: BaseException) -> list[
        logging.LogRecord]:
    service = RouterService(load_config(ROOT), Settings("amqp://guest:guest@127.0.0.1:1/"))
    stop = asyncio.Event()

    async def session(_stop: asyncio.Event) -> None:
        stop.set()
        raise error

    service._session = session  # type: ignore[method-assign]  # a session that fails at once
    with caplog.at_level(logging.DEBUG, logger="router.service"):
        await service.run(stop)
    return [r for r in caplog.records if r.name == "router.service"]


async def test_a_lost_connection_inside_the_task_group_is_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    """A ConnectionError wrapped by the TaskGroup reads as the broker going away."""
    lost = ExceptionGroup("unhandled errors in a TaskGroup",
                          [ConnectionError("connection to the broker was lost")])

    records = await _one_session(caplog, lost)

    [line] = [r for r in records if r.levelno >= logging.INFO]
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert message.startswith("broker session on no node ended after 0.0s routing: "
                              "connection to the broker was lost; reconnecting in ")
    assert 0.5 <= float(message.rsplit(" ", 1)[1].rstrip("s")) <= 1.0  # jittered backoff
    assert line.exc_info is None
    assert all(r.levelno == logging.DEBUG for r in records if r.exc_info)


async def test_an_unexpected_error_is_one_error_line_with_the_traceback_at_debug(
        caplog: pytest.LogCaptureFixture) -> None:
    """A bug names its type and message; its traceback is logged at debug level only."""
    records = await _one_session(caplog, RuntimeError("boom"))

    [line] = [r for r in records if r.levelno >= logging.INFO]
    assert line.levelno == logging.ERROR
    assert "(RuntimeError: boom)" in line.getMessage()
    assert line.exc_info is None
    assert [r.levelno for r in records if r.exc_info] == [logging.DEBUG]
