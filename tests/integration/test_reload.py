"""Hot reload on the real broker: new routes take effect while messages flow, nothing is
lost, and a broken or impossible edit changes nothing."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

from tests.integration.conftest import (
    Broker,
    ConfigDir,
    apply,
    free_port,
    http_call,
    order_created,
    wait_until,
)


def _add_audit_route(directory: ConfigDir) -> str:
    """Edit the topology: a new fanout exchange, queue, binding and route for OrderCreated."""
    topology = directory.topology
    audit, queue = directory.name("audit-x"), directory.name("audit-q")
    topology["exchanges"].append({"name": audit, "type": "fanout"})
    topology["queues"].append({"name": queue, "type": "quorum"})
    topology["bindings"].append({"exchange": audit, "queue": queue})
    topology["routes"].append({"name": "audit-created", "message_type": "OrderCreated",
                               "to": [{"exchange": audit}]})
    directory.write(topology)
    return queue


async def test_new_route_takes_effect_while_messages_flow(broker: Broker, config_dir: ConfigDir,
                                                          start_router) -> None:
    """600 messages stream in; mid-stream a route is added by reload. None is lost, and
    every message published after the reload also reaches the new route."""
    router = await start_router(config_dir)
    body = json.dumps(order_created()).encode()
    published: list[str] = []
    reloaded_at: list[int] = []

    async def stream() -> None:
        for i in range(600):
            await broker.publish(config_dir.ingress, body, type="OrderCreated",
                                 message_id=f"m-{i}")
            published.append(f"m-{i}")
            await asyncio.sleep(0.002)

    task = asyncio.create_task(stream())
    await asyncio.sleep(0.5)
    audit = _add_audit_route(config_dir)
    result = await router.service.reload()
    reloaded_at.append(len(published))
    await task

    billing = await broker.take(config_dir.name("billing"), 600, timeout=30)
    after = {f"m-{i}" for i in range(reloaded_at[0] + 1, 600)}
    audited = await broker.drain_ids(audit, after, timeout=30)

    assert result.ok, result.problems
    assert "route audit-created added" in result.changes
    assert {m.message_id for m in billing} == set(published)
    assert after <= {m.message_id for m in audited}
    assert len(audited) < 600  # the earliest ones went out before the route existed


async def test_broken_edit_changes_nothing(broker: Broker, config_dir: ConfigDir,
                                           start_router) -> None:
    """A topology that does not parse is reported, counted, and the old one keeps routing."""
    router = await start_router(config_dir)
    (config_dir.path / "topology.yaml").write_text("routes: [\n")

    result = await router.service.reload()
    await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                         message_id="still")
    [copy] = await broker.take(config_dir.name("billing"), 1)

    assert not result.ok
    assert any("topology.yaml:2: YAML error" in p for p in result.problems)
    assert copy.message_id == "still"
    failed = router.service.metrics.registry.get_sample_value(
        "mcp_router_config_reloads_total", {"result": "failed"})
    assert failed == 1


async def test_queue_argument_changes_are_refused(broker: Broker, config_dir: ConfigDir,
                                                  start_router) -> None:
    """Changing a queue's type cannot be done live: refused, saying so; nothing changes."""
    router = await start_router(config_dir)
    topology = config_dir.topology
    topology["queues"][0]["type"] = "classic"
    config_dir.write(topology)

    result = await router.service.reload()

    assert not result.ok
    assert result.problems == (
        f"queue {config_dir.name('billing')!r}: type or arguments changed; RabbitMQ cannot "
        "change them in place: delete and re-create the queue (or use a broker policy) and "
        "restart",)
    assert router.service.config.topology.queues[0].type == "quorum"


def _http(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, text = http_call(method, url, headers)
    return status, json.loads(text)


async def test_reload_by_file_change_sighup_and_http(broker: Broker, config_dir: ConfigDir,
                                                     router_process) -> None:
    """The running process reloads when the files change, on SIGHUP, and on POST /reload
    with the token (401 without), which answers 422 with the problems for a broken edit."""
    await apply(config_dir)
    port = free_port()
    router = router_process(config_dir, "--watch", "0.2", "--http", f"127.0.0.1:{port}",
                            env={"MCP_CONSOLE_TOKEN": "reload-token",
                                 "MCP_CONSOLE_AUDIT_LOG": str(config_dir.path / "audit.jsonl")})
    base = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        try:
            return (await asyncio.to_thread(_http, "GET", f"{base}/readyz"))[0] == 200
        except OSError:
            return False

    await wait_until(ready, timeout=20)
    audit = _add_audit_route(config_dir)  # picked up by the file watcher

    async def reloaded() -> bool:
        _, detail = await asyncio.to_thread(_http, "GET", f"{base}/readyz")
        return bool(detail.get("last_reload") and detail["last_reload"]["reloaded"])

    await wait_until(reloaded, timeout=20)
    await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                         message_id="after-watch")
    [audited] = await broker.take(audit, 1, timeout=10)
    router.proc.send_signal(signal.SIGHUP)  # nothing changed: an ok reload, no changes
    (config_dir.path / "topology.yaml").write_text("exchanges: 7\n")
    anonymous, _ = await asyncio.to_thread(_http, "POST", f"{base}/reload")
    status, detail = await asyncio.to_thread(_http, "POST", f"{base}/reload",
                                             {"Authorization": "Bearer reload-token"})
    router.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(router.proc.wait, 30)

    assert audited.message_id == "after-watch"
    assert anonymous == 401
    assert status == 422
    assert detail["reloaded"] is False
    assert any("'exchanges' must be a list" in p for p in detail["problems"])
    assert code == 0
    assert "configuration reloaded" in router.output()
