"""The suite's safety net on the shared broker: no test queue outlives the session.

Tests delete what they declare, but some entities are declared by the code under
test and named by it (the router's and the SDK's retry queues, ``<queue>.retry.
<ms>ms``, for every delay a policy named at some point of a reload test), and an
interrupted test deletes nothing.  Every such name starts with a test's own
prefix (``t<10 hex>.`` here, ``mcpt-<10 hex>.`` in ``router.testing.plugin``), so at the
end of the session the queues with the prefixes THIS session handed out (``claim``;
another session may be running beside it on the same broker, and its queues are
not ours) are deleted when nobody consumes from them (RabbitMQ 3.10's quorum queues
refuse ``if_unused``, so the consumer count is read with the names).  Names come
from the management API when it answers, else from a local ``rabbitmqctl``;
without either the net is skipped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import aio_pika
import pytest

__all__ = ["claim", "sweep_leftover_queues"]

TEST_PREFIX = re.compile(r"^(t[0-9a-f]{10}|mcpt-[0-9a-f]{10})\.")
_CLAIMED: set[str] = set()  # the prefixes this session's tests were given


def claim(prefix: str) -> str:
    """Note a prefix as this session's, so the sweep may delete what it left; return it."""
    _CLAIMED.add(prefix)
    return prefix


def _ours(name: str) -> bool:
    from router.testing.plugin import PREFIXES  # noqa: PLC0415 - the plugin's own prefixes

    match = TEST_PREFIX.match(name)
    return match is not None and (match.group(1) in _CLAIMED or match.group(1) in PREFIXES)


def _amqp_url() -> str:
    return os.environ.get("MCP_AMQP_URL", "amqp://guest:guest@localhost:5672/").split(",")[0]


def _from_management(url: str) -> list[str] | None:
    parts = urlsplit(url)
    vhost = quote(parts.path[1:] or "/", safe="")
    api = os.environ.get("MCP_MANAGEMENT_URL", f"http://{parts.hostname or 'localhost'}:15672")
    request = urllib.request.Request(f"{api.rstrip('/')}/api/queues/{vhost}?columns=name,consumers")  # noqa: S310 -- the test's own broker
    token = f"{parts.username or 'guest'}:{parts.password or 'guest'}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 -- as above
            return [q["name"] for q in json.load(answer) if not q.get("consumers")]
    except (OSError, ValueError, KeyError):
        return None


def _from_rabbitmqctl(url: str) -> list[str] | None:
    if urlsplit(url).hostname not in {"localhost", "127.0.0.1", "::1"}:
        return None
    vhost = urlsplit(url).path[1:] or "/"
    try:
        command = ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "consumers"]
        done = subprocess.run(command,  # noqa: S603 -- the installed CLI, fixed arguments
                              capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [line.split("\t") for line in done.stdout.splitlines()[1:]]
    return [row[0] for row in rows if len(row) == 2 and row[1].strip() == "0"]


def queue_names(url: str) -> list[str] | None:
    """The vhost's queues nobody consumes from, or None when neither way of listing works."""
    names = _from_management(url)
    return names if names is not None else _from_rabbitmqctl(url)


def test_queues(url: str) -> set[str]:
    return {n for n in (queue_names(url) or []) if TEST_PREFIX.match(n)}


async def _delete(url: str, names: list[str]) -> None:
    connection = await aio_pika.connect(url, timeout=15)
    async with connection:
        channel = await connection.channel()
        for name in names:
            try:
                await channel.queue_delete(name)
            except Exception:  # noqa: BLE001 -- gone meanwhile: that channel is closed, open anew
                channel = await connection.channel()


@pytest.fixture(scope="session", autouse=True)
def sweep_leftover_queues() -> Iterator[None]:
    """Delete, at the session's end, test-prefixed queues the session left behind."""
    url = _amqp_url()
    before = test_queues(url)
    yield
    left = sorted(n for n in test_queues(url) - before if _ours(n))
    if left:
        with contextlib.suppress(Exception):  # a net: never the reason a session fails
            asyncio.run(_delete(url, left))
