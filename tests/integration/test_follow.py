"""``mcp-router init``, ``run``, ``publish`` and ``follow`` as a new user runs them.

Everything runs as child processes on a scaffolded configuration whose
entities carry a prefix of the test's own (``router.testing.prefixing``).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.testing.prefixing import copy_prefixed
from router.tools.follow import ask_router
from router.tools.timeline import timeline
from tests.integration.conftest import (
    AMQP_URL,
    ROOT,
    Broker,
    ConfigDir,
    free_port,
    http_call,
    wait_until,
)

TOKEN = "follow-test-token"  # noqa: S105 -- a test credential for a test router


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "router", *args],  # noqa: S603 -- our CLI
                            capture_output=True, cwd=ROOT, timeout=60, check=False,
                            input=stdin)
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode(), result.stderr.decode())


async def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    result = await asyncio.to_thread(_cli, *args, stdin=stdin)
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
async def scaffold(tmp_path: Path, prefix: str, broker: Broker) -> Any:
    """``mcp-router init`` output, copied with this test's prefix; its entities deleted after."""
    init = await cli("init", str(tmp_path / "init"))
    assert init.returncode == 0, init.stderr
    target = tmp_path / "config"
    target.mkdir()
    copy_prefixed(tmp_path / "init", target, prefix)
    directory = ConfigDir(target, prefix, yaml.safe_load((target / "topology.yaml").read_text()))
    retry = target / "policies" / "retry.yaml"  # short broker-tier delays for the test
    policy = yaml.safe_load(retry.read_text())
    policy["retry"][0]["delays"] = ["50ms", "100ms"]
    retry.write_text(yaml.safe_dump(policy))
    yield directory
    await broker.delete(*directory.entities())


async def _start(router_process: Any, directory: ConfigDir) -> str:
    port = free_port()
    router_process(directory, "--http", f"127.0.0.1:{port}",
                   env={"MCP_CONSOLE_TOKEN": TOKEN})
    base = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        try:
            return (await asyncio.to_thread(http_call, "GET", f"{base}/readyz"))[0] == 200
        except OSError:
            return False

    await wait_until(ready, timeout=30)
    return f"127.0.0.1:{port}"


async def _followed(address: str, directory: ConfigDir, message_id: str,
                    last: str) -> list[str]:
    """``follow`` output once its last line contains ``last``: the journal is watched over
    HTTP (what ``follow`` reads) until then, and the command runs once it is there."""
    lines: list[str] = []

    async def journaled() -> bool:
        found = await asyncio.to_thread(ask_router, address, message_id)
        return isinstance(found, dict) and last in (timeline(found) or [""])[-1]

    await wait_until(journaled, timeout=20, interval=0.05)

    async def arrived() -> bool:
        nonlocal lines
        result = await cli("follow", message_id, "--http", address, "--config",
                           str(directory.path), "--amqp-url", AMQP_URL)
        lines = result.stdout.splitlines()
        return result.returncode == 0 and bool(lines) and last in lines[-1]

    await wait_until(arrived, timeout=20, interval=0.2)
    return lines


async def test_the_scaffold_routes_and_follow_shows_each_copy_confirmed(
        broker: Broker, scaffold: ConfigDir, router_process: Any) -> None:
    """init, run, publish a v1 order over 100: both routes get it, follow shows every step."""
    address = await _start(router_process, scaffold)

    published = await cli("publish", "--config", str(scaffold.path), "--amqp-url", AMQP_URL,
                          "--type", "OrderPlaced", "--version", "1", "--message-id", "o-1",
                          '{"order_id": "o-1", "total": 120.0}')
    [placed] = await broker.take(scaffold.name("shop.orders"), 1)
    [big] = await broker.take(scaffold.name("shop.review"), 1)
    lines = await _followed(address, scaffold, "o-1", "confirmed by the broker")
    as_json = await cli("follow", "o-1", "--json", "--http", address, "--config",
                        str(scaffold.path))

    assert published.returncode == 0, published.stderr
    record = json.loads(as_json.stdout)
    assert record["message_id"] == "o-1"
    assert [e["event"] for e in record["events"]] == ["arrived", "routed", "copy", "copy"]
    assert all(e["confirmed"] for e in record["events"] if e["event"] == "copy")
    assert json.loads(placed.body) == {"order_id": "o-1", "total": 120.0, "currency": "EUR"}
    assert json.loads(big.body) == {"order_id": "o-1", "total": 120.0}
    assert lines[0].startswith("message o-1: OrderPlaced, trace ")
    assert "arrived from exchange" in lines[1]
    assert "v1" in lines[1]
    assert lines[2].endswith("routed to orders, big-orders (2 copies)")
    assert sorted(line.split("  ", 2)[2] for line in lines[3:]) == [
        f"copy for 'big-orders' to {scaffold.name('shop')}/order.big: confirmed by the broker "
        "(1 attempt)",
        f"copy for 'orders' to {scaffold.name('shop')}/order.placed: confirmed by the broker "
        "(1 attempt)"]


async def test_follow_shows_retries_and_the_dead_letter_then_finds_it_among_dead_letters(
        broker: Broker, scaffold: ConfigDir, router_process: Any, tmp_path: Path) -> None:
    """A copy nobody is bound for is retried, dead-lettered; a raw body is malformed; with
    the router gone, follow looks into the dead letters."""
    topology = scaffold.topology
    topology["bindings"] = [b for b in topology["bindings"] if b["routing_key"] != "order.big"]
    scaffold.write(topology)
    address = await _start(router_process, scaffold)
    raw = tmp_path / "body.bin"
    raw.write_bytes(b"\xff not json")

    await cli("publish", "--config", str(scaffold.path), "--amqp-url", AMQP_URL, "--type",
              "OrderPlaced", "--message-id", "o-2", '{"order_id": "o-2", "total": 500.0, '
              '"currency": "USD"}')
    bad = await cli("publish", "--config", str(scaffold.path), "--amqp-url", AMQP_URL, "--type",
                    "OrderPlaced", "--message-id", "o-3", "--raw", str(raw))
    retried = await _followed(address, scaffold, "o-2", "dead-lettered as unroutable")
    malformed = await _followed(address, scaffold, "o-3", "dead-lettered as malformed")
    gone = await cli("follow", "o-2", "--http", "127.0.0.1:1", "--config", str(scaffold.path),
                     "--amqp-url", AMQP_URL)

    assert bad.returncode == 0, bad.stderr
    events = "\n".join(retried)
    assert "retry round 1 for 'big-orders'" in events
    assert "retry round 2 for 'big-orders'" in events
    assert "back from the retry tier: round 2 of route 'big-orders'" in events
    assert "NOT confirmed" in events
    assert "NO_ROUTE" in events
    assert "refused: malformed" in malformed[-2]
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.startswith("no router answers at 127.0.0.1:1")
    assert "dead-lettered as unroutable, route 'big-orders'" in gone.stdout
