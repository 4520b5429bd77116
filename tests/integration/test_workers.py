"""``mcp-router run --workers N`` against the real broker: N routing processes, one
supervisor, one /metrics and one /readyz; SIGTERM drains all; a crashed worker restarts."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal

from tests.integration.conftest import (
    Broker,
    ConfigDir,
    apply,
    free_port,
    http_call,
    order_created,
    wait_until,
)


def _ready(port: int) -> tuple[int, dict[str, object]]:
    status, body = http_call("GET", f"http://127.0.0.1:{port}/readyz")
    return status, json.loads(body)


async def _all_ready(port: int, workers: int) -> dict[str, object]:
    detail: dict[str, object] = {}

    async def ready() -> bool:
        nonlocal detail
        try:
            status, detail = await asyncio.to_thread(_ready, port)
        except (OSError, ValueError):
            return False
        return status == 200 and len(detail["workers"]) == workers  # type: ignore[arg-type]

    await wait_until(ready, timeout=60, interval=0.2)
    return detail


def _routed(metrics: str) -> dict[str, float]:
    """Routed-message counts by worker, from the merged exposition."""
    found: dict[str, float] = {}
    for line in metrics.splitlines():
        m = re.match(r'mcp_router_messages_total\{worker="(\d+)",outcome="routed".*\} (\S+)',
                     line)
        if m:
            found[m[1]] = found.get(m[1], 0.0) + float(m[2])
    return found


async def test_two_workers_route_and_serve_one_endpoint(
        broker: Broker, config_dir: ConfigDir, router_process) -> None:
    """Both workers consume the ingress queue; /metrics labels each one's samples, /readyz
    is ready when both are, every message is routed once."""
    await apply(config_dir)
    port = free_port()
    router = router_process(config_dir, "--workers", "2", "--http", f"127.0.0.1:{port}")
    detail = await _all_ready(port, 2)
    pids = {w["pid"] for w in detail["workers"]}  # type: ignore[attr-defined]
    messages = [(json.dumps(order_created()).encode(), {"type": "OrderCreated"})
                for _ in range(200)]
    await broker.publish_many(config_dir.ingress, messages, routing_key="OrderCreated")

    copies = await broker.take(config_dir.name("billing"), 200, timeout=30)

    async def counted() -> bool:
        metrics = (await asyncio.to_thread(http_call, "GET",
                                           f"http://127.0.0.1:{port}/metrics"))[1]
        return sum(_routed(metrics).values()) == 200

    await wait_until(counted, timeout=10, interval=0.2)
    metrics = http_call("GET", f"http://127.0.0.1:{port}/metrics")[1]
    assert len(copies) == 200
    assert len(pids) == 2
    assert router.proc.pid not in pids
    assert set(_routed(metrics)) <= {"0", "1"}
    assert metrics.count("# TYPE mcp_router_messages_total counter") == 1
    assert 'mcp_router_worker_up{worker="1"} 1' in metrics
    router.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(router.proc.wait, 60) == 0


async def test_a_crashed_worker_is_restarted(config_dir: ConfigDir, router_process) -> None:
    """kill -9 of one worker: the fleet is unready, then the worker is back with a new pid
    and its restart counted."""
    await apply(config_dir)
    port = free_port()
    router = router_process(config_dir, "--workers", "2", "--http", f"127.0.0.1:{port}")
    detail = await _all_ready(port, 2)
    victim = detail["workers"][0]  # type: ignore[index]
    os.kill(victim["pid"], signal.SIGKILL)

    async def back() -> bool:
        status, now = await asyncio.to_thread(_ready, port)
        first = now["workers"][0]  # type: ignore[index]
        return status == 200 and first["restarts"] == 1 and first["pid"] != victim["pid"]

    await wait_until(back, timeout=60, interval=0.2)
    metrics = http_call("GET", f"http://127.0.0.1:{port}/metrics")[1]
    assert 'mcp_router_worker_restarts_total{worker="0"} 1' in metrics
    router.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(router.proc.wait, 60) == 0


async def test_sigterm_drains_every_worker(broker: Broker, config_dir: ConfigDir,
                                           router_process) -> None:
    """SIGTERM to the supervisor: every worker drains what it holds and exits; nothing is
    lost, the supervisor exits 0."""
    await apply(config_dir)
    port = free_port()
    router = router_process(config_dir, "--workers", "2", "--http", f"127.0.0.1:{port}")
    await _all_ready(port, 2)
    messages = [(json.dumps(order_created()).encode(), {"type": "OrderCreated"})
                for _ in range(500)]
    await broker.publish_many(config_dir.ingress, messages, routing_key="OrderCreated")

    router.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(router.proc.wait, 90)

    routed = await broker.count(config_dir.name("billing"))
    left = await broker.count(config_dir.ingress_queue)
    assert code == 0
    assert routed + left >= 500  # at-least-once: nothing lost
    assert router.output().count("stopped") >= 2  # each worker's last words
