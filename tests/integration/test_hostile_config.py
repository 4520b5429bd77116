"""A hostile configuration edit cannot exhaust a running router; /readyz says what is wrong."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
from typing import Any

from tests.integration.conftest import (
    AMQP_URL,
    ROOT,
    Broker,
    ConfigDir,
    apply,
    free_port,
    http_call,
    order_created,
    wait_until,
)
from tests.unit.test_yaml_bombs import laughs

MEMORY_LIMIT = 2 * 1024**3  # bytes of address space for the router process


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _get(url: str) -> tuple[int, Any]:
    status, text = http_call("GET", url)
    return status, json.loads(text)


async def test_an_alias_bomb_reload_is_refused_in_bounded_memory(
        broker: Broker, config_dir: ConfigDir, tmp_path) -> None:
    """A billion-laughs edit is refused at its FILE:LINE, shown in /readyz; routing goes on."""
    await apply(config_dir)
    port = free_port()
    log = tmp_path / "router.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603,ASYNC220 -- our own CLI, started once, under a memory limit
            [sys.executable, "-m", "router", "run", "--config", str(config_dir.path),
             "--watch", "0.2", "--http", f"127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, preexec_fn=_limited,  # noqa: PLW1509 -- only setrlimit
            env={**os.environ, "MCP_AMQP_URL": AMQP_URL})
    base = f"http://127.0.0.1:{port}"
    try:
        async def ready() -> bool:
            try:
                return (await asyncio.to_thread(_get, f"{base}/readyz"))[0] == 200
            except OSError:
                return False

        await wait_until(ready, timeout=30)
        topology = (config_dir.path / "topology.yaml").read_text()
        (config_dir.path / "topology.yaml").write_text(topology + "x-bomb:\n" + "".join(
            f"  {line}\n" for line in laughs().splitlines()))

        async def refused() -> bool:
            _, detail = await asyncio.to_thread(_get, f"{base}/readyz")
            return bool(detail.get("last_reload")) and not detail["last_reload"]["reloaded"]

        await wait_until(refused, timeout=30)
        status, detail = await asyncio.to_thread(_get, f"{base}/readyz")
        await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                             message_id="after-bomb")
        [routed] = await broker.take(config_dir.name("billing"), 1, timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)

    assert status == 200
    [problem] = detail["last_reload"]["problems"]
    assert "topology.yaml:" in problem
    assert "YAML aliases expand this document" in problem
    assert routed.message_id == "after-bomb"
    assert code == 0, log.read_text()
    assert "MemoryError" not in log.read_text()
