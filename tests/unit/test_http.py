"""The ``--http`` endpoint on a loopback socket: the journal, the console token, binding."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from router.observe.journal import Journal
from router.runtime.http import HealthServer, console_token, parse_address

TOKEN = "s3cret-token"  # noqa: S105 -- a test credential for a test server


async def _request(port: int, method: str, path: str, *headers: str) -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{h}\r\n" for h in headers)
    # Connection: close, or the server keeps the connection open (keep-alive, 5 s) and
    # read() waits for the end of it.
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}\r\n"
                 .encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body) if body.startswith(b"{") else body


@pytest.fixture
async def server() -> AsyncIterator[tuple[HealthServer, int, list[str]]]:
    reloads: list[str] = []

    async def reload() -> tuple[bool, dict[str, object]]:
        reloads.append("reloaded")
        return True, {"reloaded": True}

    journal = Journal(10)
    journal.record("m/1 é", "arrived", type="Order")
    health = HealthServer(lambda: (True, {}), lambda: b"", reload, messages=journal.get,
                          token=TOKEN)
    port = await health.start("127.0.0.1", 0)
    yield health, port, reloads
    await health.close()


async def test_a_message_in_the_journal_is_served_as_json(server: Any) -> None:
    """``GET /messages/<id>`` (percent-encoded) answers the record; an unknown id is 404."""
    _, port, _ = server

    status, found = await _request(port, "GET", "/messages/m%2F1%20%C3%A9")
    missing, why = await _request(port, "GET", "/messages/nope")

    assert status == 200
    assert found["message_id"] == "m/1 é"
    assert found["events"][0]["event"] == "arrived"
    assert missing == 404
    assert "not in the journal" in why["error"]


@pytest.mark.parametrize(("headers", "status"), [
    ((), 401),
    (("Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=",), 401),
    (("Authorization: Bearer wrong",), 403),
    ((f"Authorization: Bearer {TOKEN}",), 200),
    ((f"authorization:   bearer {TOKEN}  ",), 200),
])
async def test_reload_needs_the_console_token(server: Any, headers: tuple[str, ...],
                                              status: int) -> None:
    """401 without a bearer credential, 403 with a wrong one; only the right one reloads."""
    _, port, reloads = server

    answer, _ = await _request(port, "POST", "/reload", *headers)

    assert answer == status
    assert reloads == (["reloaded"] if status == 200 else [])


async def test_without_a_configured_token_nobody_reloads_over_http() -> None:
    """No MCP_CONSOLE_TOKEN: POST /reload is 403 and says how to turn it on."""
    called: list[bool] = []

    async def reload() -> tuple[bool, dict[str, object]]:
        called.append(True)
        return True, {}

    health = HealthServer(lambda: (True, {}), lambda: b"", reload)
    port = await health.start("127.0.0.1", 0)
    try:
        status, why = await _request(port, "POST", "/reload", "Authorization: Bearer x")
    finally:
        await health.close()

    assert status == 403
    assert "MCP_CONSOLE_TOKEN" in why["error"]
    assert called == []


async def test_a_request_with_endless_headers_is_refused(server: Any) -> None:
    """More than 100 header lines: 431, nothing else read."""
    _, port, _ = server

    status, _ = await _request(port, "GET", "/healthz", *[f"X-{i}: y" for i in range(150)])

    assert status == 431


def test_an_address_without_host_binds_loopback() -> None:
    """``:8080`` is 127.0.0.1, never every interface by accident."""
    assert parse_address(":8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:80") == ("0.0.0.0", 80)  # noqa: S104 -- asked for explicitly


def test_the_token_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    """MCP_CONSOLE_TOKEN wins; else the file MCP_CONSOLE_TOKEN_FILE names (stripped)."""
    file = tmp_path / "token"
    file.write_text("from-file\n")

    assert console_token({}) is None
    assert console_token({"MCP_CONSOLE_TOKEN": "env"}) == "env"
    assert console_token({"MCP_CONSOLE_TOKEN_FILE": str(file)}) == "from-file"
    with pytest.raises(ValueError, match="cannot read MCP_CONSOLE_TOKEN_FILE"):
        console_token({"MCP_CONSOLE_TOKEN_FILE": str(tmp_path / "missing")})
